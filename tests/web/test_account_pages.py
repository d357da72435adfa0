"""The keys page: SSH keys are added, shown by fingerprint and deleted, bad ones explained; an API token is shown once,
works with the scopes ticked and is revoked; no form works without its CSRF token."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from beamhub.identity.keys.service import parse_public_key


def csrf_of(page: httpx.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def public_line(key: Any, comment: str = "me@laptop") -> str:
    return f"{key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()} {comment}"


def ed25519_line(comment: str = "me@laptop") -> str:
    return public_line(ed25519.Ed25519PrivateKey.generate(), comment)


def post_form(client: httpx.Client, path: str, **fields: Any) -> httpx.Response:
    return client.post(path, data={**fields, "csrf_token": csrf_of(client.get("/keys"))})


def test_an_ssh_key_is_added_shown_by_its_fingerprint_and_deleted(browser: Any, new_user: Any) -> None:
    client = browser(new_user())
    assert "You have no SSH keys yet" in client.get("/keys").text
    line = ed25519_line("alice@laptop")
    added = post_form(client, "/keys/ssh", public_key=line)
    assert added.status_code == 303 and added.headers["location"] == "/keys?done=key-added"
    page = client.get(added.headers["location"])
    assert parse_public_key(line).fingerprint in page.text and "alice@laptop" in page.text
    assert "The key was added" in page.text
    key_id = re.search(r'data-key="(\d+)"', page.text).group(1)  # type: ignore[union-attr]
    deleted = post_form(client, f"/keys/ssh/{key_id}/delete")
    assert deleted.status_code == 303
    page = client.get("/keys")
    assert parse_public_key(line).fingerprint not in page.text and "You have no SSH keys yet" in page.text


@pytest.mark.filterwarnings("ignore:SSH DSA key support is deprecated")
def test_a_key_that_cannot_be_used_is_explained_on_the_page(browser: Any, new_user: Any) -> None:
    client = browser(new_user())
    dsa_line = public_line(dsa.generate_private_key(key_size=1024))
    page = post_form(client, "/keys/ssh", public_key=dsa_line)
    assert page.status_code == 422 and "DSA keys are not accepted" in page.text and 'role="alert"' in page.text
    assert dsa_line.split()[1] in page.text  # the pasted key comes back to be corrected
    short = post_form(client, "/keys/ssh", public_key=public_line(rsa.generate_private_key(65537, 1024)))
    assert short.status_code == 422 and "this RSA key has 1024 bits; at least 2048 are needed" in short.text
    line = ed25519_line()
    assert post_form(client, "/keys/ssh", public_key=line).status_code == 303
    again = post_form(client, "/keys/ssh", public_key=line)
    assert again.status_code == 409 and "already has the key" in again.text
    client.cookies.set("beamhub-lang", "zh_CN")
    assert "不接受 DSA 密钥" in post_form(client, "/keys/ssh", public_key=dsa_line).text


def test_a_new_token_is_shown_once_works_for_its_scopes_and_is_revoked(hub: Any, browser: Any, new_user: Any) -> None:
    client = browser(new_user())
    posted = post_form(client, "/keys/tokens", name="laptop-scripts", scopes=["data:read"], days="30")
    assert posted.status_code == 303  # post/redirect/get: reloading the page that shows it posts nothing again
    created = client.get(posted.headers["location"])
    assert created.status_code == 200 and "it is shown only this once" in created.text
    token = re.search(r"<code id=\"new-token\" data-token-value>([^<]+)</code>", created.text).group(1)  # type: ignore
    again = client.get(posted.headers["location"])
    assert token not in again.text and "already shown once" in again.text
    api = hub.client(token)
    assert api.get("/api/v1/proposals").status_code == 200
    assert api.get("/api/v1/sessions").status_code == 403  # it may read data, not start sessions
    listing = client.get("/keys")
    assert token not in listing.text and "laptop-scripts" in listing.text and "read and download data" in listing.text
    token_id = re.search(r'data-token="(\d+)">\s*<td>laptop-scripts', listing.text).group(1)  # type: ignore
    revoked = post_form(client, f"/keys/tokens/{token_id}/revoke")
    assert revoked.status_code == 303 and "The token was revoked" in client.get(revoked.headers["location"]).text
    assert api.get("/api/v1/proposals").status_code == 401


def test_a_token_form_that_is_not_complete_is_explained(browser: Any, new_user: Any) -> None:
    client = browser(new_user())
    unnamed = post_form(client, "/keys/tokens", name=" ", scopes=["sessions"])
    assert unnamed.status_code == 422 and "Give the token a name" in unnamed.text
    nothing = post_form(client, "/keys/tokens", name="empty")
    assert nothing.status_code == 422 and "Choose at least one thing the token may do." in nothing.text
    forever = post_form(client, "/keys/tokens", name="long", scopes=["sessions"], days="100000")
    assert forever.status_code == 422 and "a whole number of days from 1 to 3650" in forever.text
    assert 'value="long"' in forever.text  # the form comes back as typed
    admin = post_form(client, "/keys/tokens", name="sneaky", scopes=["admin"])
    assert admin.status_code == 403 and "only administrators can hold a token with the admin scope" in admin.text


def test_forms_without_the_csrf_token_are_refused(browser: Any, new_user: Any) -> None:
    client = browser(new_user())
    for path, fields in [("/keys/ssh", {"public_key": ed25519_line()}),
                         ("/keys/tokens", {"name": "x", "scopes": "sessions"})]:
        refused = client.post(path, data=fields)
        assert refused.status_code == 403 and "CSRF" in refused.text, path
        assert client.post(path, data={**fields, "csrf_token": "forged"}).status_code == 403
    page = client.get("/keys").text
    assert "You have no SSH keys yet" in page and "<td>x</td>" not in page


def test_the_keys_pages_speak_chinese(browser: Any, new_user: Any) -> None:
    client = browser(new_user())
    client.cookies.set("beamhub-lang", "zh_CN")
    assert "<h1>密钥和令牌</h1>" in client.get("/keys").text
    created = client.get(post_form(client, "/keys/tokens", name="zh", scopes=["sessions"]).headers["location"])
    assert "<h1>您的新令牌</h1>" in created.text and "它只显示这一次" in created.text
