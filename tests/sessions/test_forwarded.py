"""X-Forwarded-For counts only from configured proxies: sessions run on the same host, so a header from loopback
must not let a user claim a beamline workstation's address (and stop the session it holds)."""

from __future__ import annotations

from typing import Any

WORKSTATION = "192.0.2.9"
SLEEP = {"kind": "command", "command": "sleep", "args": ["600"], "ncores": 0.1, "memory": "64Mi"}


def claim_workstation(hub: Any) -> int:
    """A user asks for a session from the workstation's address, saying so in X-Forwarded-For: the status."""
    registered = hub.admin.post("/uniqueipinfo/", json={"sourceip": WORKSTATION, "beamline": "b7"})
    assert registered.status_code == 201, registered.text
    _, token = hub.create_user()
    with hub.client(token) as client:
        answer = client.post("/api/v1/sessions", json={**SLEEP, "source_ip": WORKSTATION},
                             headers={"X-Forwarded-For": WORKSTATION})
    if answer.status_code == 201:
        hub.admin.delete(f"/api/v1/sessions/{answer.json()['id']}")
    return answer.status_code


def test_forwarded_headers_from_an_untrusted_address_are_ignored(make_hub: Any) -> None:
    hub = make_hub()
    assert claim_workstation(hub) == 403
    audit = hub.admin.get("/api/v1/audit", params={"action": "token.use"}).json()
    assert audit and all(event["address"] == "127.0.0.1" for event in audit)


def test_a_configured_proxy_forwards_the_clients_address(make_hub: Any) -> None:
    hub = make_hub(BEAMHUB_TRUSTED_PROXIES='["127.0.0.0/8"]')
    assert claim_workstation(hub) == 201
