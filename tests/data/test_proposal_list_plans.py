"""The proposals list of a member starts at the membership index: with 10,000 proposals, neither database's plan
reads the proposals table through a filter (SQLite: no SCAN of proposals; PostgreSQL: no Seq Scan of it, no
hashed SubPlan), and the page is what `visible` lets in, in id order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from beamhub.data.models import Proposal, ProposalMember
from beamhub.db import database_value, insert_rows, utcnow
from beamhub.identity.principal import Principal
from helpers.data import ADMIN, new_user

PROPOSALS, MEMBER_OF, RELEASED = 10_000, 10, 3


def _fill(services: Any, user_id: int) -> list[str]:
    """PROPOSALS proposals of beamlines b0..b13 (RELEASED of them public), the user a member of MEMBER_OF."""
    proposals, members = Proposal.__table__, ProposalMember.__table__
    with services.db.session() as db:
        now = database_value(db, proposals, "created_at", utcnow())
        rows = [(f"2024-{n:05d}", "t", f"b{n % 14}", "hot", now, now, now if n % 3001 == 7 else None, 1, 1, now)
                for n in range(PROPOSALS)]
        insert_rows(db, proposals, ("id", "title", "beamline", "tier", "beamtime_start", "beamtime_end",
                                    "embargo_released_at", "acl_version", "acl_applied_version", "created_at"), rows)
        mine = [f"2024-{n:05d}" for n in range(500, PROPOSALS, PROPOSALS // MEMBER_OF)]
        insert_rows(db, members, ("proposal_id", "user_id", "role", "added_at"),
                    [(pid, user_id, "member", now) for pid in mine])
        db.connection().exec_driver_sql("ANALYZE")
    return mine


def _plan(services: Any, statement: str, parameters: Any) -> list[str]:
    with services.db.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            return [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
        return [row[0] for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)]


def test_a_members_proposals_come_from_the_membership_index(services: Any, system_users: list[str]) -> None:
    user = new_user(services, system_users, "pl")
    mine = _fill(services, user.id)
    released = [f"2024-{n:05d}" for n in range(PROPOSALS) if n % 3001 == 7]
    member = Principal(username=user.username, user_id=user.id, roles=frozenset())
    statements: list[tuple[str, Any]] = []
    listen = lambda _c, _k, statement, parameters, *_: statements.append((statement, parameters))  # noqa: E731
    event.listen(services.db.engine, "before_cursor_execute", listen)
    try:
        first = services.data.list(member, None, 5)
        rest = services.data.list(member, first[-1].id, 50)
    finally:
        event.remove(services.db.engine, "before_cursor_execute", listen)
    expected = sorted(set(mine) | (set(released) if services.data.public_group else set()))
    assert [p.id for p in first + rest] == expected
    listing = [s for s in statements if "UNION" in s[0]]
    assert listing, statements
    plan = [line for statement, parameters in listing for line in _plan(services, statement, parameters)]
    full_scans = [line for line in plan if "Seq Scan on proposals" in line or "SubPlan" in line
                  or (line.startswith("SCAN proposals") and "ix_proposals_released_id" not in line)]
    assert not full_scans, plan  # the released proposals' own (partial) index is theirs alone
    assert any("proposal_members" in line for line in plan), plan


def test_an_administrator_pages_through_the_primary_key(services: Any, system_users: list[str]) -> None:
    user = new_user(services, system_users, "pl")
    _fill(services, user.id)
    page = services.data.list(ADMIN, "2024-00100", 3)
    assert [p.id for p in page] == ["2024-00101", "2024-00102", "2024-00103"]
