"""A session's own API credential: a token of its user that may only read data, in the session's environment
(`BEAMHUB_URL`, `BEAMHUB_TOKEN`), so that what runs in the session (the live-frames client, a script asking for a
proposal's files) acts as its user and no one else; it is revoked once the session ends.
"""

from __future__ import annotations

import logging

from beamhub.config import Settings
from beamhub.identity.accounts.models import User
from beamhub.identity.accounts.service import IdentityService
from beamhub.identity.principal import SYSTEM
from beamhub.sessions.models import SessionRecord

log = logging.getLogger(__name__)

URL_ENV = "BEAMHUB_URL"
TOKEN_ENV = "BEAMHUB_TOKEN"
PROPOSAL_ENV = "BEAMHUB_PROPOSAL"
"""The proposal the session works on, if its user chose one."""
SCOPES = ["data:read"]


def token_name(session_id: str) -> str:
    """The name the session's token has in its user's list of tokens."""
    return f"session {session_id}"


def session_credentials(identity: IdentityService, settings: Settings, user: User,
                        record: SessionRecord) -> dict[str, str]:
    """A new token for a session about to start, with its proposal, as the environment its programs get; the token
    lasts at most as long as a session may (max_runtime) and ends with the session (end_session_credentials)."""
    token, _ = identity.issue_token(user.username, token_name(record.id), expires_in=int(settings.max_runtime),
                                    scopes=SCOPES, by=SYSTEM)
    env = {URL_ENV: settings.callback_url, TOKEN_ENV: token}
    return env | {PROPOSAL_ENV: record.proposal} if record.proposal else env


def end_session_credentials(identity: IdentityService, user_id: int, session_id: str) -> None:
    """Revoke a session's token; a failure is logged (the token still ends at its expiry)."""
    try:
        identity.revoke_tokens_named(user_id, token_name(session_id), by=SYSTEM)
    except Exception:
        log.exception("could not revoke the token of session %s; it ends at its expiry", session_id)
