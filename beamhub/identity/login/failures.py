"""The failed-login limit: failures in a sliding window, per username and per address, counted in the database so
that every worker process and replica of beamhub enforces the same limit."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select

from beamhub.db import Database, utcnow
from beamhub.errors import N_, TooManyRequests
from beamhub.identity.login.models import LoginFailure

TOO_MANY_FAILURES = {
    ("account",): N_("too many failed logins for this account; try again in %(seconds)s seconds"),
    ("address",): N_("too many failed logins for this address; try again in %(seconds)s seconds"),
    ("account", "address"): N_("too many failed logins for this account and address; try again in %(seconds)s seconds"),
}
"""The refusal when an account, an address or both failed too often lately."""


def _keys(username: str, address: str) -> dict[str, str]:
    return {"account": f"u:{username}", "address": f"a:{address}"}


class FailureLimiter:
    """Failed logins in a sliding window of `window` seconds; `max_failures` of them block the account or address.

    Not the audit log's count_failures: that counts every refused action (a bad API token, too), and a login
    limit should count failed logins only.
    """

    def __init__(self, db: Database, max_failures: int, window: float) -> None:
        self.db = db
        self.max_failures = max_failures
        self.window = timedelta(seconds=window)

    def check(self, username: str, address: str) -> None:
        """TooManyRequests (429) if the user or the address failed too often lately."""
        keys = _keys(username, address)
        recent = (select(LoginFailure.key, func.count()).group_by(LoginFailure.key)
                  .where(LoginFailure.key.in_(keys.values()), LoginFailure.at > utcnow() - self.window))
        with self.db.session() as db:
            counts: dict[str, int] = {key: count for key, count in db.execute(recent)}
        blocked = tuple(kind for kind, key in keys.items() if counts.get(key, 0) >= self.max_failures)
        if blocked:
            raise TooManyRequests(TOO_MANY_FAILURES[blocked], seconds=int(self.window.total_seconds()))

    def failed(self, username: str, address: str) -> None:
        """Count a failure against both; failures older than the window are forgotten."""
        now = utcnow()
        with self.db.session() as db:
            db.execute(delete(LoginFailure).where(LoginFailure.at <= now - self.window))
            db.add_all([LoginFailure(key=key, at=now) for key in _keys(username, address).values()])

    def succeeded(self, username: str) -> None:
        """A right password clears the account's failures (not the address's)."""
        with self.db.session() as db:
            db.execute(delete(LoginFailure).where(LoginFailure.key == f"u:{username}"))
