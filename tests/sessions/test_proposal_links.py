"""A session opens where its user sees their proposals: ~/proposals holds a link to each proposal they may read,
made by the session's agent as the user; the default image reads the data with the scientific stack."""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import h5py
import numpy
import pytest

IMAGE = Path("/opt/beamhub/images/default")

READS = """
import json, os, sys
import h5py, matplotlib, numpy, pandas, scipy, skimage
matplotlib.use("Agg")
import matplotlib.pyplot
home = os.path.expanduser("~")
folder = os.path.join(home, "proposals")
found = {"entries": sorted(n for n in os.listdir(folder) if n[0] != ".") if os.path.isdir(folder) else None}
for name in sys.argv[1:]:
    try:
        with h5py.File(os.path.join(folder, name, "scan.h5"), "r") as scan:
            found[name] = float(scipy.ndimage.gaussian_filter(scan["frame"][()], 1).sum())
    except OSError as exc:
        found[name] = type(exc).__name__
print(json.dumps(found))
"""
"""A session's program: lists ~/proposals and reads each named proposal's scan.h5 through its link."""

REFUSED = "import sys\ntry:\n    open(sys.argv[1], 'rb')\nexcept PermissionError:\n    print('refused')\n"


@pytest.fixture(scope="module")
def server(module_beamhub_factory: Any, uid_range_env: dict[str, str], storage: Path) -> Any:
    if not (IMAGE / "bin" / "python").exists():
        pytest.skip(f"no default image at {IMAGE}: run scripts/install.sh")
    return module_beamhub_factory({**uid_range_env, "BEAMHUB_STORAGE_ROOT": str(storage)})


@pytest.fixture(scope="module")
def people(server: Any) -> dict[str, tuple[str, str]]:
    return {"alice": server.create_user(), "bob": server.create_user()}


def new_proposal(server: Any, storage: Path, *members: str) -> tuple[str, Path]:
    """A proposal of beamline b7 with these members and a small HDF5 scan; its id and folder."""
    now = datetime.now(UTC)
    proposal_id = f"2025-{secrets.randbelow(10**5):05d}"
    created = server.admin.post("/api/v1/proposals", json={
        "id": proposal_id, "title": "links", "beamline": "b7", "beamtime_start": (now - timedelta(hours=1)).isoformat(),
        "beamtime_end": now.isoformat(), "members": [{"username": m} for m in members]})
    assert created.status_code == 201, created.text
    folder = storage / "hot" / "b7" / proposal_id
    with h5py.File(folder / "scan.h5", "w") as scan:  # new files inherit the folder's default ACL
        scan["frame"] = numpy.ones((8, 8))
    return proposal_id, folder


@pytest.fixture(scope="module")
def proposals(server: Any, storage: Path, people: dict[str, tuple[str, str]]) -> dict[str, tuple[str, Path]]:
    """alice's proposal and bob's."""
    return {"alice": new_proposal(server, storage, people["alice"][0]),
            "bob": new_proposal(server, storage, people["bob"][0])}


def run_session(server: Any, token: str, script: str, *args: str) -> str:
    """Run `python -c script args` as a command session of the token's user; what it printed."""
    with server.client(token) as client:
        started = client.post("/api/v1/sessions", json={"kind": "command", "command": "python",
                                                        "args": ["-c", script, *args], "memory": "512Mi"})
        assert started.status_code == 201, started.text
        session = server.wait_for_state(started.json()["id"], {"completed", "failed", "stopped"}, timeout=60)
        assert session["state"] == "completed", session
        return client.get(f"/api/v1/sessions/{session['id']}/log").text


def expected_target(folder: Path) -> str:
    """Where a proposal's link leads: its stable path <storage_root>/current/<beamline>/<id> (a migration re-points
    it), else its folder."""
    stable = folder.parents[2] / "current" / folder.parent.name / folder.name
    return str(stable if stable.is_symlink() else folder)


def links_of(username: str) -> Path:
    return Path(pwd.getpwnam(username).pw_dir) / "proposals"


def as_user(username: str, *argv: str) -> None:
    """Run a command as the user (what a user does in their own home)."""
    account = pwd.getpwnam(username)
    subprocess.run(["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups", *argv],
                   check=True, cwd=account.pw_dir)


def test_a_session_sees_the_proposals_its_user_may_read_and_reads_them_with_the_default_image(
        server: Any, people: dict[str, tuple[str, str]], proposals: dict[str, tuple[str, Path]]) -> None:
    mine, theirs = proposals["alice"][0], proposals["bob"][0]
    printed = run_session(server, people["alice"][1], READS, mine, theirs)
    assert f'"entries": ["{mine}", "README.txt"]' in printed, printed
    assert f'"{mine}": 64.0' in printed and f'"{theirs}": "FileNotFoundError"' in printed, printed


def test_the_links_are_the_users_own_and_lead_to_their_proposals_only(
        server: Any, people: dict[str, tuple[str, str]], proposals: dict[str, tuple[str, Path]]) -> None:
    run_session(server, people["alice"][1], "pass")
    folder, uid = links_of(people["alice"][0]), pwd.getpwnam(people["alice"][0]).pw_uid
    assert folder.lstat().st_uid == uid and folder.lstat().st_mode & 0o777 == 0o700
    link = folder / proposals["alice"][0]
    assert link.is_symlink() and link.lstat().st_uid == uid
    assert os.readlink(link) == expected_target(proposals["alice"][1])
    assert link.resolve() == proposals["alice"][1].resolve()
    assert sorted(p.name for p in folder.iterdir()) == [".beamhub-links", proposals["alice"][0], "README.txt"]
    assert "read-only" in (folder / "README.txt").read_text()


def test_the_kernel_refuses_another_proposals_data_even_by_its_path(
        server: Any, people: dict[str, tuple[str, str]], proposals: dict[str, tuple[str, Path]]) -> None:
    printed = run_session(server, people["alice"][1], REFUSED, str(proposals["bob"][1] / "scan.h5"))
    assert printed.strip() == "refused"


def test_starting_again_keeps_the_links_and_the_users_files_and_follows_membership(
        server: Any, storage: Path, people: dict[str, tuple[str, str]],
        proposals: dict[str, tuple[str, Path]]) -> None:
    alice = people["alice"][0]
    run_session(server, people["alice"][1], "pass")
    folder = links_of(alice)
    mine = folder / proposals["alice"][0]
    before = mine.lstat().st_ino
    as_user(alice, "sh", "-c", "echo mine > proposals/notes.txt && ln -s /tmp proposals/scratch")
    added, added_folder = new_proposal(server, storage, alice)
    left = server.admin.delete(f"/api/v1/proposals/{proposals['alice'][0]}/members/{alice}")
    assert left.status_code == 200, left.text

    run_session(server, people["alice"][1], "pass")
    assert not mine.is_symlink()
    assert os.readlink(folder / added) == expected_target(added_folder)
    assert (folder / "notes.txt").read_text() == "mine\n" and os.readlink(folder / "scratch") == "/tmp"
    server.admin.put(f"/api/v1/proposals/{proposals['alice'][0]}/members/{alice}")
    run_session(server, people["alice"][1], "pass")
    assert mine.is_symlink() and mine.lstat().st_ino != before  # made again once she is a member again
    again = mine.lstat().st_ino
    run_session(server, people["alice"][1], "pass")
    assert mine.lstat().st_ino == again  # an unchanged link is left as it is


def test_a_users_own_file_named_proposals_is_left_alone(
        server: Any, people: dict[str, tuple[str, str]], proposals: dict[str, tuple[str, Path]]) -> None:
    bob = people["bob"][0]
    as_user(bob, "sh", "-c", "echo my list > proposals")
    printed = run_session(server, people["bob"][1], READS)
    assert '"entries": null' in printed
    assert links_of(bob).read_text() == "my list\n" and not links_of(bob).is_symlink()
