"""The catalogue seen from the file system: where a registration works, path ranges as SQL, the datasets' totals
(kept by deltas in the transactions that change the files, never recounted)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Delete, select, true, update
from sqlalchemy.orm import Session

from beamhub.data.models import DataFile, Dataset
from beamhub.db import Database, utcnow


@dataclass(frozen=True)
class Target:
    """What to register: a proposal's folder on one tier, and the path inside it to start from."""

    proposal_id: str
    root: Path
    start: Path
    tier: str

    def relative(self, path: Path) -> str:
        return "" if path == self.root else path.relative_to(self.root).as_posix()


def folder_range(prefix: str) -> tuple[str, str]:
    """[low, high) holding exactly the paths below folder `prefix` (byte order: '0' follows '/')."""
    return f"{prefix}/", f"{prefix}0"


def under(column: Any, folder: str) -> ColumnElement[bool]:
    """SQL: the path column is `folder` itself or lies below it ("" is the whole proposal).

    One range [folder, high) that an index can seek, narrowed by a filter: an OR of the folder and
    its range made SQLite read every path of the proposal.
    """
    if not folder:
        return true()
    low, high = folder_range(folder)
    return (column >= folder) & (column < high) & ((column == folder) | (column >= low))


Deltas = dict[str, list[int]]
"""Per dataset name: [files, bytes] a transaction adds to its totals (negative: removes)."""


def dataset_of(relpath: str) -> str | None:
    """The dataset (first-level folder) a file's path lies in; None for a file at the proposal's top."""
    name, slash, _ = relpath.partition("/")
    return name if slash else None


def count_into(deltas: Deltas, relpath: str, files: int, size: int) -> None:
    """Add a file's change (files +1/0/-1, bytes) to the deltas of its dataset."""
    name = dataset_of(relpath)
    if name is not None:
        totals = deltas.setdefault(name, [0, 0])
        totals[0], totals[1] = totals[0] + files, totals[1] + size


def removed(db: Session, query: Delete) -> int:
    """Run a DELETE of data_files, taking what it removed off its datasets' totals in the same transaction."""
    deltas: Deltas = {}
    rows = db.execute(query.returning(DataFile.proposal_id, DataFile.relpath, DataFile.size)).all()
    for row in rows:
        count_into(deltas, row.relpath, -1, -row.size)
    if rows:
        apply_deltas(db, rows[0].proposal_id, deltas)
    return len(rows)


def apply_deltas(db: Session, proposal_id: str, deltas: Deltas) -> None:
    """Add the deltas to the datasets' totals (a relative UPDATE: concurrent writers add up); create those missing."""
    for name, (files, size) in sorted(deltas.items()):
        if not files and not size:
            continue
        changed = db.execute(update(Dataset).where(Dataset.proposal_id == proposal_id, Dataset.name == name).values(
            file_count=Dataset.file_count + files, total_bytes=Dataset.total_bytes + size, updated_at=utcnow()))
        if not changed.rowcount:
            db.add(Dataset(proposal_id=proposal_id, name=name, file_count=files, total_bytes=size))
            db.flush()


def refresh_datasets(database: Database, target: Target, names: set[str] | None = None) -> None:
    """Settle the datasets a registration touched (all of the proposal's when names is None): a folder with no
    record yet gets an empty dataset, a dataset with neither files nor folder goes. Totals are kept by apply_deltas."""
    if names is None:
        with database.session() as db:
            names = set(db.scalars(select(Dataset.name).where(Dataset.proposal_id == target.proposal_id)))
        names |= {entry.name for entry in os.scandir(target.root) if entry.is_dir(follow_symlinks=False)}
    for name in sorted(names):
        _settle(database, target, name)


def touched(target: Target) -> set[str] | None:
    """The datasets a registration from target.start may touch; None: any of the proposal's."""
    relative = target.relative(target.start)
    if not relative:
        return None
    return {relative.split("/", 1)[0]} if "/" in relative or target.start.is_dir() else set()


def _settle(database: Database, target: Target, name: str) -> None:
    with database.session() as db:
        dataset = db.scalar(select(Dataset).where(Dataset.proposal_id == target.proposal_id, Dataset.name == name))
        exists = (target.root / name).is_dir()
        if dataset is None and exists:
            db.add(Dataset(proposal_id=target.proposal_id, name=name, file_count=0, total_bytes=0))
        elif dataset is not None and not exists and not dataset.file_count:
            db.delete(dataset)
