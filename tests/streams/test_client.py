"""beamhub_stream's choices that need no server: where a ZeroMQ endpoint is reached, and what it refuses to guess."""

from __future__ import annotations

import pytest
from beamhub_stream import reachable, subscribe


@pytest.mark.parametrize(("bound", "reached"), [
    ("tcp://0.0.0.0:5561", "tcp://beamhub.example.org:5561"),
    ("tcp://*:5561", "tcp://beamhub.example.org:5561"),
    ("tcp://[::]:5561", "tcp://beamhub.example.org:5561"),
    ("tcp://10.1.0.5:5561", "tcp://10.1.0.5:5561"),
    ("ipc:///run/beamhub/frames", "ipc:///run/beamhub/frames"),
])
def test_a_wildcard_endpoint_is_reached_at_beamhub_s_own_host(bound: str, reached: str) -> None:
    assert reachable(bound, "https://beamhub.example.org:8443/prefix") == reached


@pytest.mark.parametrize(("base", "reached"), [
    ("http://[::1]:8000", "tcp://[::1]:5561"),
    ("https://[2001:db8::5]/prefix", "tcp://[2001:db8::5]:5561"),
    ("http://127.0.0.1:8000", "tcp://127.0.0.1:5561"),
])
def test_an_ip_address_of_beamhub_is_reached_as_zeromq_writes_it(base: str, reached: str) -> None:
    assert reachable("tcp://*:5561", base) == reached


def test_subscribe_says_what_it_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BEAMHUB_URL", "BEAMHUB_TOKEN", "BEAMHUB_STREAM"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="token"):
        subscribe("2024-00001", url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="no ZeroMQ endpoint"):
        subscribe("2024-00001", token="t", via="zeromq")
    with pytest.raises(ValueError, match="address"):
        subscribe("2024-00001", token="t", via="websocket")
    with pytest.raises(ValueError, match="via is one of"):
        subscribe("2024-00001", token="t", via="carrier pigeon")
