"""Who makes a request, and what they may do."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from beamhub.errors import Forbidden

SCOPES = frozenset({"sessions", "keys", "data:read", "data:ingest", "admin"})
"""What a token may be limited to; a login cookie carries every scope its user's roles allow.
`keys` adds SSH keys, which outlive the token: a token limited to other scopes cannot."""


def role_scopes(roles: frozenset[str] | list[str]) -> frozenset[str]:
    """The scopes a user's roles can use: a token issued without a list gets these."""
    scopes = {"sessions", "keys", "data:read"}
    if "admin" in roles:
        scopes |= {"admin", "data:ingest"}
    if "service" in roles:
        scopes.add("data:ingest")
    return frozenset(scopes)


@dataclass(frozen=True)
class Principal:
    """A user (or the bootstrap admin, user_id None) as seen by one request."""

    username: str
    user_id: int | None
    roles: frozenset[str] = frozenset({"user"})
    beamlines: frozenset[str] = frozenset()
    scopes: frozenset[str] | None = None
    address: str = ""
    token_id: int | None = field(default=None, compare=False)
    login_id: int | None = field(default=None, compare=False)
    expires_at: datetime | None = field(default=None, compare=False)
    """When the credential this request came with ends (a token's or login session's expiry)."""
    uid: int | None = field(default=None, compare=False)
    """The UID the kernel knows the user by, read with the credential (None: no UID, as the bootstrap admin)."""
    gids: frozenset[int] = field(default=frozenset(), compare=False)
    """The user's primary and supplementary GIDs, as the kernel would check them."""
    groups: frozenset[str] = field(default=frozenset(), compare=False)
    """The names of the user's supplementary groups in beamhub (`<beamline>-staff` makes staff of a beamline)."""
    gid: int | None = field(default=None, compare=False)
    """The user's primary GID, read with the credential (None where the credential did not read it)."""
    supplementary_gids: tuple[int, ...] = field(default=(), compare=False)
    """The user's supplementary GIDs in the order their host account lists them (IdentityService.account's)."""

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles and self.has_scope("admin")

    @property
    def is_staff(self) -> bool:
        return "staff" in self.roles

    def has_scope(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes

    def require_scope(self, scope: str) -> None:
        if not self.has_scope(scope):
            raise Forbidden("this token lacks the %(scope)r scope", scope=scope)

    def require_full_credential(self) -> None:
        """Refuse scope-limited tokens: only a login session or an unscoped token may do this."""
        if self.scopes is not None and not role_scopes(self.roles) <= self.scopes:
            raise Forbidden("this needs a login session or a token without scope limits")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this needs an administrator")

    def require_self_or_admin(self, username: str) -> None:
        """Refuse anyone but the user themself or an administrator."""
        if username != self.username:
            self.require_admin()

    def may_act_for(self, user_id: int) -> bool:
        return self.is_admin or self.user_id == user_id

    def serves(self, beamline: str | None) -> bool:
        """Whether this is staff of the beamline (names are stored normalized, so they compare exactly)."""
        return self.is_staff and beamline is not None and beamline in self.beamlines

    def may_manage(self, owner_id: int, beamline: str | None) -> bool:
        """Owners and admins manage a session; staff manage those of the beamlines they serve."""
        return self.may_act_for(owner_id) or self.serves(beamline)

    def with_address(self, address: str) -> Principal:
        return replace(self, address=address)


SYSTEM = Principal(username="beamhub", user_id=None, roles=frozenset({"admin"}))
"""beamhub itself (a service calling another, the reconciler): an administrator the audit log names `beamhub`."""
