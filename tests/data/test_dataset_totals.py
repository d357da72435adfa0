"""Dataset totals are kept by deltas in the transactions that write the files: a re-registration and the watcher's
single-file registration never count a dataset's files again, and the totals stay exact through add, modify and
delete."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select

from beamhub.data.models import DataFile, Dataset
from helpers.data import ADMIN, new_proposal, write

RECOUNT = re.compile(r"(count|sum)\s*\(.*\bFROM\s+data_files", re.IGNORECASE | re.DOTALL)


@pytest.fixture
def recounts(services: Any) -> Iterator[list[str]]:
    """The statements that aggregate over data_files, as they run."""
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if RECOUNT.search(statement):
            seen.append(statement)

    event.listen(services.db.engine, "before_cursor_execute", listen)
    yield seen
    event.remove(services.db.engine, "before_cursor_execute", listen)


def totals(services: Any, proposal_id: str) -> dict[str, tuple[int, int]]:
    """Each dataset's (files, bytes) as kept."""
    with services.db.session() as db:
        return {d.name: (d.file_count, d.total_bytes)
                for d in db.scalars(select(Dataset).where(Dataset.proposal_id == proposal_id))}


def counted(services: Any, proposal_id: str) -> dict[str, tuple[int, int]]:
    """Each dataset's (files, bytes) counted from the records (the test's own recount)."""
    with services.db.session() as db:
        rows = db.execute(select(DataFile.relpath, DataFile.size).where(DataFile.proposal_id == proposal_id)).all()
    result: dict[str, tuple[int, int]] = {}
    for relpath, size in rows:
        name = relpath.split("/", 1)[0]
        files, total = result.get(name, (0, 0))
        result[name] = (files + 1, total + size)
    return result


def test_totals_stay_exact_and_nothing_recounts(services: Any, recounts: list[str]) -> None:
    proposal = new_proposal(services, "b3")
    folder = services.data.proposal_dir(proposal)
    for n in range(20):
        write(folder, f"scan{n % 2}/sub/f{n}.h5", b"x" * n)
    services.registration.register(ADMIN, proposal.id)
    assert totals(services, proposal.id) == counted(services, proposal.id) == {"scan0": (10, 90), "scan1": (10, 100)}
    write(folder, "scan0/sub/f0.h5", b"y" * 1000)  # modified
    (folder / "scan1" / "sub" / "f1.h5").unlink()  # deleted
    write(folder, "scan2/new.h5", b"z" * 7)  # added, in a new dataset
    services.registration.register(ADMIN, proposal.id)
    assert totals(services, proposal.id) == counted(services, proposal.id) == {
        "scan0": (10, 1090), "scan1": (9, 99), "scan2": (1, 7)}
    write(folder, "scan2/watched.h5", b"w" * 5)
    services.registration.register_files(ADMIN, proposal.id, proposal.tier, [folder / "scan2" / "watched.h5"])
    (folder / "scan0" / "sub" / "f2.h5").unlink()
    services.registration.register_files(ADMIN, proposal.id, proposal.tier, [folder / "scan0" / "sub" / "f2.h5"])
    assert totals(services, proposal.id) == counted(services, proposal.id) == {
        "scan0": (9, 1088), "scan1": (9, 99), "scan2": (2, 12)}
    assert recounts == []


def test_a_removed_folder_takes_its_dataset_with_it(services: Any, recounts: list[str]) -> None:
    proposal = new_proposal(services, "b3")
    folder = services.data.proposal_dir(proposal)
    write(folder, "gone/a.h5", b"abc")
    write(folder, "empty/.keep", b"")
    services.registration.register(ADMIN, proposal.id)
    assert totals(services, proposal.id) == {"gone": (1, 3), "empty": (1, 0)}
    for path in sorted((folder / "gone").rglob("*"), reverse=True):
        path.unlink()
    (folder / "gone").rmdir()
    services.registration.register(ADMIN, proposal.id)
    assert totals(services, proposal.id) == {"empty": (1, 0)}
    with services.db.session() as db:
        assert db.scalar(select(func.count()).select_from(DataFile).where(DataFile.proposal_id == proposal.id)) == 1
    assert len(recounts) == 1  # the test's own
