"""The catalogue seen from the file system: where a registration works, path ranges as SQL, the datasets' counts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, func, select, true

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


def refresh_datasets(database: Database, target: Target) -> None:
    """Recount the datasets (first-level folders) the registration touched; drop those that are gone."""
    relative = target.relative(target.start)
    if relative:
        names = {relative.split("/", 1)[0]} if "/" in relative or target.start.is_dir() else set()
    else:
        with database.session() as db:
            names = set(db.scalars(select(Dataset.name).where(Dataset.proposal_id == target.proposal_id)))
        names |= {entry.name for entry in os.scandir(target.root) if entry.is_dir(follow_symlinks=False)}
    for name in sorted(names):
        recount(database, target, name)


def recount(database: Database, target: Target, name: str) -> None:
    low, high = folder_range(name)
    with database.session() as db:
        count, total = db.execute(select(func.count(), func.coalesce(func.sum(DataFile.size), 0)).where(
            DataFile.proposal_id == target.proposal_id, DataFile.relpath >= low, DataFile.relpath < high)).one()
        dataset = db.scalar(select(Dataset).where(Dataset.proposal_id == target.proposal_id, Dataset.name == name))
        if not count and not (target.root / name).is_dir():
            if dataset is not None:
                db.delete(dataset)
            return
        if dataset is None:
            dataset = Dataset(proposal_id=target.proposal_id, name=name)
            db.add(dataset)
        dataset.file_count, dataset.total_bytes, dataset.updated_at = count, total, utcnow()
