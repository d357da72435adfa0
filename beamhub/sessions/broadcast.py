"""The session events' broadcaster: each new event with who may see it, read once per process for every stream."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from beamhub.broadcast import Broadcaster
from beamhub.identity.principal import Principal
from beamhub.sessions.models import SessionEvent, SessionRecord, SessionState

CHANNEL = "session_events"
ENDED = frozenset(state.value for state in SessionState if not state.is_active)


@dataclass(frozen=True)
class Published:
    """A new event with what decides who may see it: the owner of its session and the session's beamline."""

    event: SessionEvent
    user_id: int
    beamline: str | None

    def visible_to(self, principal: Principal) -> bool:
        return principal.may_manage(self.user_id, self.beamline)

    @property
    def ends_session(self) -> bool:
        return self.event.kind == "transition" and self.event.state in ENDED


class EventBroadcaster(Broadcaster[Published]):
    """Hands every new session event, with its session's owner and beamline, to each open stream."""

    channel = CHANNEL

    def _read_after(self, db: Session, cursor: int) -> list[Published]:
        query = (select(SessionEvent, SessionRecord.user_id, SessionRecord.beamline)
                 .join(SessionRecord, SessionRecord.id == SessionEvent.session_id)
                 .where(SessionEvent.id > cursor).order_by(SessionEvent.id))
        return [Published(event, user_id, beamline) for event, user_id, beamline in db.execute(query)]

    def _id_of(self, item: Published) -> int:
        return item.event.id

    def _latest(self, db: Session) -> int:
        return db.scalar(select(SessionEvent.id).order_by(SessionEvent.id.desc()).limit(1)) or 0
