"""SSH public keys: real keys from ssh-keygen are parsed with its own fingerprints, weak or broken keys are
refused with a reason, and users keep their keys through the API and the HEPS spawner's sshpubkeys."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from beamhub.config import Settings
from beamhub.errors import Conflict, Forbidden, Invalid, NotFound
from beamhub.identity.keys.service import DSA_REFUSED, SshKeyService, parse_keys, parse_public_key, split_keys
from beamhub.identity.principal import SYSTEM, Principal
from beamhub.services import build_services
from helpers.accounts import UserMaker
from helpers.http import assert_error

IMAGE = Path("/opt/beamhub/images/default")
ACCEPTED = {"ed25519": ["-t", "ed25519"], "ecdsa256": ["-t", "ecdsa", "-b", "256"],
            "ecdsa384": ["-t", "ecdsa", "-b", "384"], "ecdsa521": ["-t", "ecdsa", "-b", "521"],
            "rsa2048": ["-t", "rsa", "-b", "2048"], "rsa4096": ["-t", "rsa", "-b", "4096"]}
ALGORITHMS = {"ed25519": ("ssh-ed25519", 256), "ecdsa256": ("ecdsa-sha2-nistp256", 256),
              "ecdsa384": ("ecdsa-sha2-nistp384", 384), "ecdsa521": ("ecdsa-sha2-nistp521", 521),
              "rsa2048": ("ssh-rsa", 2048), "rsa4096": ("ssh-rsa", 4096)}
SLEEPER = {"ncores": 0.5, "memory": "1G", "single_cmd": "sleep", "single_cmd_args": "300"}


def keygen(directory: Path, name: str, options: list[str]) -> Path:
    """A new key pair from ssh-keygen; returns the .pub file."""
    subprocess.run(["ssh-keygen", "-q", "-N", "", "-C", f"{name}@test", "-f", str(directory / name), *options],
                   check=True, capture_output=True)
    return directory / f"{name}.pub"


def dsa_public_key(directory: Path) -> str:
    """A DSA public key line: from ssh-keygen where it still makes them, else from cryptography."""
    try:
        return keygen(directory, "dsa", ["-t", "dsa"]).read_text().strip()
    except subprocess.CalledProcessError:
        key = dsa.generate_private_key(key_size=1024).public_key()
        return key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + " dsa@test"


def ssh_keygen_fingerprint(pub: Path) -> tuple[int, str]:
    """Bits and SHA256 fingerprint as `ssh-keygen -lf` prints them."""
    bits, fingerprint, *_ = subprocess.run(["ssh-keygen", "-lf", str(pub)], check=True, capture_output=True,
                                           text=True).stdout.split()
    return int(bits), fingerprint


def line_of(pub: Path) -> str:
    return pub.read_text().strip()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The .pub files of one key of each kind, made once for the module."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed (Debian package openssh-client)")
    directory = tmp_path_factory.mktemp("keys")
    made = {name: keygen(directory, name, options) for name, options in ACCEPTED.items()}
    made["rsa1024"] = keygen(directory, "rsa1024", ["-t", "rsa", "-b", "1024"])
    made["other_ed25519"] = keygen(directory, "other_ed25519", ["-t", "ed25519"])
    (directory / "dsa_line.pub").write_text(dsa_public_key(directory) + "\n")
    made["dsa"] = directory / "dsa_line.pub"
    return made


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_an_accepted_key_has_the_fingerprint_ssh_keygen_shows(keys: dict[str, Path], name: str) -> None:
    parsed = parse_public_key(line_of(keys[name]))
    algorithm, bits = ALGORITHMS[name]
    assert (parsed.algorithm, parsed.bits) == (algorithm, bits)
    assert (parsed.bits, parsed.fingerprint) == ssh_keygen_fingerprint(keys[name])
    assert parsed.public_key == " ".join(line_of(keys[name]).split()[:2])
    assert parsed.comment == f"{name}@test"


def test_surrounding_spaces_and_a_missing_comment_are_fine(keys: dict[str, Path]) -> None:
    kind, data, _ = line_of(keys["ed25519"]).split()
    parsed = parse_public_key(f"  {kind}   {data}  \n")
    assert (parsed.public_key, parsed.comment) == (f"{kind} {data}", "")


def test_a_short_rsa_key_is_refused_naming_its_size(keys: dict[str, Path]) -> None:
    with pytest.raises(Invalid, match="1024 bits.*at least 2048"):
        parse_public_key(line_of(keys["rsa1024"]))


def test_a_dsa_key_is_refused_with_advice(keys: dict[str, Path]) -> None:
    with pytest.raises(Invalid) as refused:
        parse_public_key(line_of(keys["dsa"]))
    assert str(refused.value) == DSA_REFUSED


@pytest.mark.parametrize(("line", "reason"), [
    ("", "no SSH public key given"),
    ("hello world", "not an SSH public key"),
    ("ssh-ed25519", "not an SSH public key"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----", "private key"),
    ("ssh-foo AAAAB3NzaC1yc2E= x", "key type 'ssh-foo' is not accepted"),
    ("ssh-ed25519 not*base64", "not valid base64"),
    ("ssh-ed25519 AAAA", "too short"),
    ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAQDQW1SRbVRr1ekTTgLTelRlgNiAEX/c0rafs2k7vnoJ0QZV7HQ84e+rcYzuNpzbG1gjY2x0",
     "not valid base64"),
])
def test_garbage_is_refused_with_a_reason(line: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        parse_public_key(line)


def test_a_cut_key_is_refused_as_damaged(keys: dict[str, Path]) -> None:
    kind, data, _ = line_of(keys["ed25519"]).split()
    with pytest.raises(Invalid, match="damaged or incomplete"):
        parse_public_key(f"{kind} {data[:-8]}")


def test_a_type_that_does_not_match_the_key_data_is_refused(keys: dict[str, Path]) -> None:
    data = line_of(keys["ed25519"]).split()[1]
    with pytest.raises(Invalid, match="says ssh-rsa but its data is a ssh-ed25519 key"):
        parse_public_key(f"ssh-rsa {data}")


def test_split_keys_skips_blank_lines_and_comments() -> None:
    text = "# my keys\n\nssh-ed25519 AAAA one\r\n   \n  # old laptop\nssh-rsa BBBB two  \n"
    assert split_keys(text) == ["ssh-ed25519 AAAA one", "ssh-rsa BBBB two"]


def test_parse_keys_names_the_bad_key(keys: dict[str, Path]) -> None:
    text = f"{line_of(keys['ed25519'])}\n{line_of(keys['rsa1024'])}\n"
    with pytest.raises(Invalid, match="key 2 of 2: this RSA key has 1024 bits"):
        parse_keys(text)


# --- the service, on SQLite and PostgreSQL -----------------------------------------------------


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[SshKeyService]:
    """An SshKeyService on a fresh database, with one user (no system account)."""
    settings = Settings(state_dir=tmp_path / "state", database_url=database_url, manage_system_accounts=False)
    services = build_services(settings)
    services.identity.create_user("keyholder", uid=24242, by=SYSTEM)
    yield services.keys
    services.db.dispose()


@pytest.fixture
def holder(service: SshKeyService) -> Principal:
    """keyholder, logged in."""
    return service.identity.principal_of(service.identity.get_user("keyholder", by=SYSTEM))


def test_several_keys_are_added_all_or_none(service: SshKeyService, holder: Principal,
                                            keys: dict[str, Path]) -> None:
    with pytest.raises(Invalid, match="key 2 of 2"):
        service.add_keys("keyholder", f"{line_of(keys['ed25519'])}\n{line_of(keys['dsa'])}", by=holder)
    assert service.list_keys("keyholder", by=holder) == []
    added = service.add_keys("keyholder", f"{line_of(keys['ed25519'])}\n# work\n{line_of(keys['rsa2048'])}",
                             by=holder)
    assert [key.algorithm for key in service.list_keys("keyholder", by=holder)] == [key.algorithm for key in added]
    assert [key.algorithm for key in added] == ["ssh-ed25519", "ssh-rsa"]


def test_a_duplicate_is_a_conflict_unless_skipped(service: SshKeyService, holder: Principal,
                                                  keys: dict[str, Path]) -> None:
    service.add_key("keyholder", line_of(keys["ed25519"]), by=holder)
    with pytest.raises(Conflict, match="already has the key SHA256:"):
        service.add_keys("keyholder", f"{line_of(keys['ecdsa256'])}\n{line_of(keys['ed25519'])}", by=holder)
    added = service.add_keys("keyholder", f"{line_of(keys['ecdsa256'])}\n{line_of(keys['ed25519'])}",
                             by=holder, skip_duplicates=True)
    assert [key.algorithm for key in added] == ["ecdsa-sha2-nistp256"]
    assert len(service.list_keys("keyholder", by=holder)) == 2


def test_add_key_takes_exactly_one_key(service: SshKeyService, holder: Principal, keys: dict[str, Path]) -> None:
    with pytest.raises(Invalid, match="exactly one key"):
        service.add_key("keyholder", f"{line_of(keys['ed25519'])}\n{line_of(keys['rsa2048'])}", by=holder)


def test_authorized_keys_holds_a_line_per_key(service: SshKeyService, holder: Principal,
                                              keys: dict[str, Path]) -> None:
    assert service.authorized_keys("keyholder") == ""
    service.add_keys("keyholder", f"{line_of(keys['ed25519'])}\n{line_of(keys['ecdsa384'])}", by=holder)
    assert service.authorized_keys("keyholder") == f"{line_of(keys['ed25519'])}\n{line_of(keys['ecdsa384'])}\n"


def test_deleting_a_key_of_someone_else_is_not_found(service: SshKeyService, holder: Principal,
                                                     keys: dict[str, Path]) -> None:
    key = service.add_key("keyholder", line_of(keys["ed25519"]), by=holder)
    other = service.identity.principal_of(service.identity.create_user("other", uid=24243, by=SYSTEM))
    with pytest.raises(NotFound):
        service.delete_key("other", key.id, by=other)
    assert service.delete_key("keyholder", key.id, by=holder).fingerprint == key.fingerprint
    assert service.list_keys("keyholder", by=holder) == []


def test_a_token_limited_to_sessions_adds_no_key_but_the_keys_scope_does(service: SshKeyService, holder: Principal,
                                                                         keys: dict[str, Path]) -> None:
    sessions_only = replace(holder, scopes=frozenset({"sessions"}))
    line = line_of(keys["ed25519"])
    for attempt in (lambda: service.add_key("keyholder", line, by=sessions_only),
                    lambda: service.add_keys("keyholder", line, by=sessions_only),
                    lambda: service.validate("keyholder", line, sessions_only),
                    lambda: service.store("keyholder", parse_keys(line), sessions_only)):
        with pytest.raises(Forbidden, match="'keys' scope"):
            attempt()
    assert service.list_keys("keyholder", by=holder) == []
    assert service.validate("keyholder", "", sessions_only) == []  # no key, nothing to refuse
    added = service.add_key("keyholder", line, by=replace(holder, scopes=frozenset({"keys"})))
    assert [key.fingerprint for key in service.list_keys("keyholder", by=holder)] == [added.fingerprint]


# --- the API, on a real server -----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(module_beamhub_factory: Any, module_database_url: str, uid_range_env: dict[str, str]) -> Any:
    """One server per database (SQLite, PostgreSQL) that this module's API tests share."""
    return module_beamhub_factory(env={"BEAMHUB_DATABASE_URL": module_database_url, **uid_range_env})


def test_a_user_adds_lists_and_deletes_a_key(server: Any, make_user: UserMaker, keys: dict[str, Path]) -> None:
    username, token = make_user()
    client = server.client(token)
    response = client.post(f"/api/v1/users/{username}/keys", json={"public_key": line_of(keys["ecdsa521"])})
    assert response.status_code == 201, response.text
    key = response.json()
    assert (key["algorithm"], key["bits"], key["comment"]) == ("ecdsa-sha2-nistp521", 521, "ecdsa521@test")
    assert key["fingerprint"] == ssh_keygen_fingerprint(keys["ecdsa521"])[1]
    assert key["public_key"] == " ".join(line_of(keys["ecdsa521"]).split()[:2])
    assert key["created_at"]
    assert client.get(f"/api/v1/users/{username}/keys").json() == [key]
    assert client.delete(f"/api/v1/users/{username}/keys/{key['id']}").json()["id"] == key["id"]
    assert client.get(f"/api/v1/users/{username}/keys").json() == []
    assert_error(client.delete(f"/api/v1/users/{username}/keys/{key['id']}"), 404, f"no SSH key {key['id']}")
    audit = server.admin.get("/api/v1/audit", params={"action": "sshkey.*", "actor": username}).json()
    assert [(e["action"], e["target"], e["detail"]["fingerprint"]) for e in audit] == [
        ("sshkey.delete", username, key["fingerprint"]), ("sshkey.add", username, key["fingerprint"])]


def test_the_same_key_twice_is_a_conflict(server: Any, make_user: UserMaker, keys: dict[str, Path]) -> None:
    username, token = make_user()
    client = server.client(token)
    fingerprint = ssh_keygen_fingerprint(keys["ed25519"])[1]
    assert client.post(f"/api/v1/users/{username}/keys", json={"public_key": line_of(keys["ed25519"])}).is_success
    again = client.post(f"/api/v1/users/{username}/keys", json={"public_key": line_of(keys["ed25519"]) + " copy"})
    assert_error(again, 409, fingerprint)
    assert len(client.get(f"/api/v1/users/{username}/keys").json()) == 1


@pytest.mark.parametrize(("name", "reason"), [("dsa", "DSA keys are not accepted"), ("rsa1024", "1024 bits")])
def test_a_weak_key_is_refused_with_its_reason(server: Any, make_user: UserMaker, keys: dict[str, Path],
                                                name: str, reason: str) -> None:
    username, token = make_user()
    response = server.client(token).post(f"/api/v1/users/{username}/keys", json={"public_key": line_of(keys[name])})
    assert_error(response, 422, reason)


def test_garbage_is_refused_by_the_api(server: Any, make_user: UserMaker) -> None:
    username, token = make_user()
    response = server.client(token).post(f"/api/v1/users/{username}/keys", json={"public_key": "my key"})
    assert_error(response, 422, "not an SSH public key")


def test_another_user_may_not_touch_keys_but_an_admin_may(server: Any, make_user: UserMaker,
                                                           keys: dict[str, Path]) -> None:
    owner, _ = make_user()
    _, intruder_token = make_user()
    intruder = server.client(intruder_token)
    body = {"public_key": line_of(keys["ed25519"])}
    assert_error(intruder.post(f"/api/v1/users/{owner}/keys", json=body), 403, "SSH keys")
    key = server.admin.post(f"/api/v1/users/{owner}/keys", json=body).json()
    assert_error(intruder.get(f"/api/v1/users/{owner}/keys"), 403)
    assert_error(intruder.delete(f"/api/v1/users/{owner}/keys/{key['id']}"), 403)
    assert [k["id"] for k in server.admin.get(f"/api/v1/users/{owner}/keys").json()] == [key["id"]]


def test_keys_need_credentials(server: Any, make_user: UserMaker, keys: dict[str, Path]) -> None:
    username, _ = make_user()
    anonymous = server.client()
    assert_error(anonymous.get(f"/api/v1/users/{username}/keys"), 401)
    assert_error(anonymous.post(f"/api/v1/users/{username}/keys", json={"public_key": line_of(keys["ed25519"])}),
                 401)


def token_with(server: Any, username: str, scopes: list[str]) -> str:
    """A new token of this user, limited to these scopes."""
    response = server.admin.post(f"/api/v1/users/{username}/tokens", json={"name": "limited", "scopes": scopes})
    assert response.status_code == 201, response.text
    return response.json()["token"]


def test_a_sessions_token_cannot_add_a_key_but_a_keys_token_can(server: Any, make_user: UserMaker,
                                                                keys: dict[str, Path]) -> None:
    username, _ = make_user()
    sessions_only = server.client(token_with(server, username, ["sessions"]))
    body = {"public_key": line_of(keys["ed25519"])}
    assert_error(sessions_only.post(f"/api/v1/users/{username}/keys", json=body), 403, "'keys' scope")
    assert server.admin.get(f"/api/v1/users/{username}/keys").json() == []
    wider = sessions_only.post(f"/api/v1/users/{username}/tokens", json={"name": "w", "scopes": ["keys"]})
    assert_error(wider, 403, "keys")  # nor can it mint a token that may
    keys_only = server.client(token_with(server, username, ["keys"]))
    added = keys_only.post(f"/api/v1/users/{username}/keys", json=body)
    assert added.status_code == 201, added.text
    assert [k["id"] for k in keys_only.get(f"/api/v1/users/{username}/keys").json()] == [added.json()["id"]]
    assert keys_only.delete(f"/api/v1/users/{username}/keys/{added.json()['id']}").status_code == 200


def test_keys_of_an_unknown_user_are_not_found(server: Any) -> None:
    assert_error(server.admin.get("/api/v1/users/nobody-here/keys"), 404, "nobody-here")


# --- the HEPS spawner's sshpubkeys -------------------------------------------------------------


@pytest.fixture
def image() -> None:
    if not IMAGE.is_dir():
        pytest.skip(f"no image at {IMAGE}: run scripts/install.sh")


def test_a_pods_sshpubkeys_are_added_to_the_users_keys(server: Any, make_user: UserMaker, image: None,
                                                       keys: dict[str, Path]) -> None:
    username, token = make_user()
    client = server.client(token)
    known = client.post(f"/api/v1/users/{username}/keys", json={"public_key": line_of(keys["ed25519"])}).json()
    sshpubkeys = f"{line_of(keys['ed25519'])}\n# laptop\n\n{line_of(keys['rsa4096'])}\n"
    response = server.admin.post("/userpod/", json={"username": username, "sshpubkeys": sshpubkeys, **SLEEPER})
    assert response.status_code == 201, response.text
    try:
        listed = client.get(f"/api/v1/users/{username}/keys").json()
        assert [k["fingerprint"] for k in listed] == [known["fingerprint"], ssh_keygen_fingerprint(keys["rsa4096"])[1]]
    finally:
        stopped = server.admin.delete("/userpod/", params={"username": username, "podname": "default"})
        assert stopped.status_code == 200, stopped.text


def test_a_sessions_token_cannot_add_keys_through_sshpubkeys(server: Any, make_user: UserMaker,
                                                             keys: dict[str, Path]) -> None:
    username, _ = make_user()
    sessions_only = server.client(token_with(server, username, ["sessions"]))
    body = {"username": username, "sshpubkeys": line_of(keys["ed25519"]), **SLEEPER}
    assert_error(sessions_only.post("/userpod/", json=body), 403, "'keys' scope")
    assert server.admin.get(f"/userpod/{username}").json() == []  # refused before a session started
    assert server.admin.get(f"/api/v1/users/{username}/keys").json() == []


def test_a_token_with_the_keys_scope_adds_keys_through_sshpubkeys(server: Any, make_user: UserMaker, image: None,
                                                                  keys: dict[str, Path]) -> None:
    username, _ = make_user()
    client = server.client(token_with(server, username, ["sessions", "keys"]))
    response = client.post("/userpod/", json={"username": username, "sshpubkeys": line_of(keys["ed25519"]),
                                              **SLEEPER})
    assert response.status_code == 201, response.text
    try:
        listed = server.admin.get(f"/api/v1/users/{username}/keys").json()
        assert [k["fingerprint"] for k in listed] == [ssh_keygen_fingerprint(keys["ed25519"])[1]]
    finally:
        assert server.admin.delete("/userpod/", params={"username": username, "podname": "default"}).is_success


def test_a_bad_sshpubkeys_is_refused_before_a_session_starts(server: Any, make_user: UserMaker, image: None,
                                                             keys: dict[str, Path]) -> None:
    username, token = make_user()
    sshpubkeys = f"{line_of(keys['ed25519'])}\n{line_of(keys['dsa'])}"
    response = server.admin.post("/userpod/", json={"username": username, "sshpubkeys": sshpubkeys, **SLEEPER})
    assert_error(response, 422, "key 2 of 2", "DSA keys are not accepted")
    assert server.admin.get(f"/userpod/{username}").json() == []
    assert server.client(token).get(f"/api/v1/users/{username}/keys").json() == []
