"""/api/v1/proposals/{id}/h5 on a real server: h5grove's answers for a member, nothing for anyone else.

A member reads /meta, /attr, /data (json, bin, npy, csv, a selection of a 3-D stack), /stats and /paths of
a file of their proposal; a non-member gets 404; a path that climbs out, an absolute one, a symlink out and a
hard link from another proposal are refused (a symlink that stays inside is followed, a FIFO is no file);
nothing inside a file (an external link, a virtual dataset) makes beamhub read another file; a 10 GiB
dataset is sliced and streamed while the server's memory barely moves.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers.http import assert_error
from helpers.processes import proc_status

h5py = pytest.importorskip("h5py", reason="h5py is not installed: run scripts/install.sh")

STACK = np.arange(4 * 50 * 60, dtype=np.int32).reshape(4, 50, 60)
BIG_FRAMES = 1280  # 1280 frames of 2048 x 2048 uint16: 10 GiB, sparse on disk
MiB = 1024 * 1024


@dataclass
class World:
    server: Any
    proposals: dict[str, dict[str, Any]]
    tokens: dict[str, str]
    names: dict[str, str]

    def get(self, who: str, route: str, proposal: str = "P1", **params: Any) -> Any:
        client = self.server.client(self.tokens[who])
        return client.get(f"/api/v1/proposals/{self.proposals[proposal]['id']}/h5/{route}", params=params)

    def folder(self, key: str) -> Path:
        return Path(self.proposals[key]["path"])


def write_scan(path: Path, secret: Path) -> None:
    """A NeXus-like file: a 3-D stack with attributes, a title, a soft link, an external link and a virtual
    dataset that both point into another proposal's file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        entry = h5.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        stack = entry.create_dataset("data/stack", data=STACK, chunks=(1, 50, 60))
        stack.attrs["units"] = "counts"
        entry["title"] = "in situ XRD"
        entry["latest"] = h5py.SoftLink("/entry/data/stack")
        entry["elsewhere"] = h5py.ExternalLink(str(secret), "/secret")
        layout = h5py.VirtualLayout(shape=(3,), dtype="i8")
        layout[:] = h5py.VirtualSource(str(secret), "secret", shape=(3,))
        entry.create_virtual_dataset("mirror", layout)


def write_big(path: Path) -> None:
    """A 10 GiB contiguous dataset of which only two frames are written (the rest is a hole in the file)."""
    with h5py.File(path, "w") as h5:
        frames = h5.create_dataset("frames", shape=(BIG_FRAMES, 2048, 2048), dtype="<u2")
        frames[7] = np.full((2048, 2048), 7, dtype="<u2")
        frames[BIG_FRAMES - 1] = 1


def _proposal(server: Any, member: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    created = server.admin.post("/api/v1/proposals", json={
        "id": f"2024-{secrets.randbelow(10**5):05d}", "title": "HDF5 over HTTP", "beamline": "b9",
        "beamtime_start": (now - timedelta(days=1)).isoformat(), "beamtime_end": now.isoformat(),
        "members": [{"username": member, "role": "pi"}]})
    assert created.status_code == 201, created.text
    return created.json()


def _register(server: Any, proposal: dict[str, Any]) -> None:
    answer = server.admin.post(f"/api/v1/proposals/{proposal['id']}/register", json={})
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def world(module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Iterator[World]:
    storage = Path(tempfile.mkdtemp(prefix="beamhub-h5-"))
    storage.chmod(0o755)
    server = module_beamhub_factory(env={**uid_range_env, "BEAMHUB_STORAGE_ROOT": str(storage)})
    try:
        names, tokens = {}, {}
        for who in ("member", "other", "stranger"):
            names[who], tokens[who] = server.create_user(username=f"h5{secrets.token_hex(3)}")
        proposals = {"P1": _proposal(server, names["member"]), "P2": _proposal(server, names["other"])}
        secret = Path(proposals["P2"]["path"]) / "secret.h5"
        with h5py.File(secret, "w") as h5:
            h5["secret"] = np.array([4, 2, 42])
        write_scan(Path(proposals["P1"]["path"]) / "scan1/f.h5", secret)
        for proposal in proposals.values():
            _register(server, proposal)
        write_big(Path(proposals["P1"]["path"]) / "scan1/big.h5")  # after: registering would checksum 10 GiB
        os.link(secret, Path(proposals["P1"]["path"]) / "scan1/linked.h5")
        (Path(proposals["P1"]["path"]) / "scan1/out.h5").symlink_to(secret)
        (Path(proposals["P1"]["path"]) / "scan1/latest.h5").symlink_to("f.h5")
        os.mkfifo(Path(proposals["P1"]["path"]) / "scan1/pipe.h5")
        yield World(server, proposals, tokens, names)
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def test_a_member_reads_the_tree_as_h5grove_gives_it(world: World) -> None:
    answer = world.get("member", "meta", file="scan1/f.h5", path="/entry")
    assert answer.status_code == 200, answer.text
    meta = answer.json()
    assert (meta["kind"], meta["name"]) == ("group", "entry")
    assert meta["attributes"] == [{"name": "NX_class", "shape": [], "type": meta["attributes"][0]["type"]}]
    children = {child["name"]: child for child in meta["children"]}
    assert children["data"]["kind"] == "group" and children["title"]["kind"] == "dataset"
    assert children["latest"]["kind"] == "dataset" and children["latest"]["shape"] == [4, 50, 60]
    assert children["elsewhere"] == {"kind": "external_link", "name": "elsewhere",
                                     "target_file": str(world.folder("P2") / "secret.h5"), "target_path": "/secret"}
    stack = world.get("member", "meta", file="scan1/f.h5", path="/entry/data/stack").json()
    assert (stack["shape"], stack["chunks"], stack["type"]["dtype"]) == ([4, 50, 60], [1, 50, 60], "<i4")
    assert world.get("member", "attr", file="scan1/f.h5", path="/entry/data/stack").json() == {"units": "counts"}
    paths = world.get("member", "paths", file="scan1/f.h5", path="/entry").json()
    assert paths[0] == "/entry" and {"/entry/data/stack", "/entry/latest", "/entry/elsewhere"} <= set(paths)


def test_a_member_reads_a_selection_of_a_3d_stack_in_every_format(world: World) -> None:
    def data(**params: Any) -> Any:
        answer = world.get("member", "data", **{"file": "scan1/f.h5", "path": "/entry/data/stack", **params})
        assert answer.status_code == 200, answer.text
        return answer

    assert data(selection="1,10:12,5:8").json() == STACK[1, 10:12, 5:8].tolist()
    assert data(selection="2", flatten="true").json() == STACK[2].ravel().tolist()
    raw = data(selection="0:4:2,::7", format="bin", dtype="safe").content
    assert np.array_equal(np.frombuffer(raw, "<i4"), STACK[0:4:2, ::7].ravel())
    npy = np.load(io.BytesIO(data(selection="1:3,-3:,:4", format="npy").content))
    assert np.array_equal(npy, STACK[1:3, -3:, :4])
    assert np.array_equal(np.loadtxt(io.StringIO(data(selection="3,0:2", format="csv").text), delimiter=","),
                          STACK[3, 0:2])
    assert data(path="/entry/title").json() == "in situ XRD"
    stats = world.get("member", "stats", file="scan1/f.h5", path="/entry/latest", selection="1").json()
    assert stats == {"min": int(STACK[1].min()), "max": int(STACK[1].max()), "mean": int(STACK[1].mean()),
                     "std": int(STACK[1].std()), "positive_min": int(STACK[1].min()),
                     "strict_positive_min": int(STACK[1].min())}
    assert_error(world.get("member", "data", file="scan1/f.h5", path="/entry/data/stack", selection="9"), 422,
                 "out of range")


def test_a_non_member_gets_not_found(world: World) -> None:
    for route in ("meta", "attr", "data", "stats", "paths"):
        assert_error(world.get("stranger", route, file="scan1/f.h5", path="/entry/data/stack"), 404)
        assert_error(world.get("other", route, file="scan1/f.h5", path="/entry/data/stack"), 404)


def test_a_member_added_reads_at_once_and_taken_out_reads_nothing_more_at_once(world: World) -> None:
    """beamhub keeps a proposal's row a second or two for the viewer's many requests: a refusal reads it again, and
    the file's ACL, rewritten when the member goes and checked as the caller on every request, refuses them at once."""
    member = f"/api/v1/proposals/{world.proposals['P1']['id']}/members/{world.names['stranger']}"
    assert world.get("member", "meta", file="scan1/f.h5", path="/entry").status_code == 200  # the row is in memory
    assert_error(world.get("stranger", "meta", file="scan1/f.h5", path="/entry"), 404)
    assert world.server.admin.put(member, json={"role": "member"}).status_code == 200
    try:
        assert world.get("stranger", "meta", file="scan1/f.h5", path="/entry").status_code == 200
    finally:
        assert world.server.admin.delete(member).status_code == 200
    for route in ("meta", "data"):
        assert_error(world.get("stranger", route, file="scan1/f.h5", path="/entry/data/stack"), 404)


@pytest.mark.parametrize("file, status", [("../{P2}/secret.h5", 422), ("{P2_PATH}/secret.h5", 422),
                                          ("scan1/out.h5", 404), ("scan1/linked.h5", 404),
                                          ("scan1/%2e%2e/f.h5", 422)])
def test_paths_out_of_the_proposal_are_refused(world: World, file: str, status: int) -> None:
    file = file.format(P2=world.proposals["P2"]["id"], P2_PATH=world.folder("P2"))
    answer = world.get("member", "data", file=file, path="/secret")
    assert_error(answer, status)
    assert "42" not in answer.text


def test_a_symlink_inside_the_proposal_is_read_and_a_fifo_is_not_waited_for(world: World) -> None:
    """A link that stays in the proposal leads to its target (whose own ACL decides); a FIFO is no file."""
    answer = world.get("member", "data", file="scan1/latest.h5", path="/entry/data/stack", selection="1,10:12,5:8")
    assert answer.status_code == 200 and answer.json() == STACK[1, 10:12, 5:8].tolist()
    assert_error(world.get("member", "meta", file="scan1/pipe.h5", path="/"), 404)


def test_nothing_inside_a_file_makes_beamhub_read_another(world: World) -> None:
    assert_error(world.get("member", "data", file="scan1/f.h5", path="/entry/elsewhere"), 422, "not a dataset")
    assert_error(world.get("member", "meta", file="scan1/f.h5", path="/entry/elsewhere/secret"), 404,
                 "external links are not followed")
    assert_error(world.get("member", "data", file="scan1/f.h5", path="/entry/mirror"), 403, "other files")
    assert_error(world.get("member", "stats", file="scan1/f.h5", path="/entry/mirror"), 403, "other files")


def vm_rss(pid: int) -> int:
    """The resident memory of a process, in bytes."""
    return int(proc_status(pid)["VmRSS"].split()[0]) * 1024


def test_a_10_gib_dataset_is_sliced_and_streamed_in_bounded_memory(world: World) -> None:
    pid = world.server.process.pid
    assert world.get("member", "meta", file="scan1/big.h5", path="/frames").json()["shape"] == [BIG_FRAMES, 2048,
                                                                                               2048]
    world.get("member", "data", file="scan1/big.h5", path="/frames", selection="7,0:2,0:2", format="bin")
    before = vm_rss(pid)
    small = world.get("member", "data", file="scan1/big.h5", path="/frames", selection="7,100:110,5:8")
    assert small.json() == [[7] * 3] * 10
    client = world.server.client(world.tokens["member"])
    received = 0
    with client.stream("GET", f"/api/v1/proposals/{world.proposals['P1']['id']}/h5/data",
                       params={"file": "scan1/big.h5", "path": "/frames", "selection": "0:25", "format": "bin"}) as big:
        assert big.status_code == 200 and int(big.headers["content-length"]) == 25 * 2048 * 2048 * 2
        for chunk in big.iter_bytes():
            received += len(chunk)
    growth = vm_rss(pid) - before
    print(f"server VmRSS {before / MiB:.0f} MiB before, grew {growth / MiB:.1f} MiB over a 10x3 json slice "
          f"and a {received / MiB:.0f} MiB streamed bin slice of a 10 GiB dataset")
    assert received == 25 * 2048 * 2048 * 2
    assert growth < 48 * MiB
    assert_error(world.get("member", "data", file="scan1/big.h5", path="/frames", selection="0:25"), 422,
                 "bin, npy or csv")
