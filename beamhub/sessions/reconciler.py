"""One idempotent loop that makes what runs agree with the database."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from beamhub.compute.backend import PollResult
from beamhub.db import utcnow
from beamhub.errors import N_
from beamhub.identity.principal import SYSTEM
from beamhub.leader import RECONCILER_LOCK, LeaderLock
from beamhub.sessions.models import SessionRecord, SessionState
from beamhub.sessions.service import SessionService

log = logging.getLogger(__name__)
S = SessionState


class Reconciler:
    def __init__(self, sessions: SessionService) -> None:
        self.sessions = sessions
        self.settings = sessions.settings
        self.leader = LeaderLock(sessions.db, RECONCILER_LOCK)

    def run_once(self) -> None:
        """Fail dead sessions, expire old ones, warn before expiry, stop orphans."""
        if not self.leader.held():
            return
        for record in self.sessions.active():
            try:
                self._reconcile(record)
            except Exception:
                log.exception("reconciling session %s failed", record.id)
        running = self.sessions.backend.list()
        # Read after listing: a session created meanwhile is in the database before it runs.
        known = {record.id for record in self.sessions.active()}
        for handle in running:
            if handle.get("session_id") not in known:
                log.warning("stopping orphan %s: no active session owns it", handle)
                self.sessions.backend.stop(handle)

    def _reconcile(self, record: SessionRecord) -> None:
        now = utcnow()
        if record.state is S.stopping:
            self.sessions.stop(SYSTEM, record.id, reason=record.reason or "")
            return
        if record.handle is not None and record.state in (S.starting, S.running):
            result = self.sessions.backend.poll(record.handle)
            if not result.alive:
                self._ended(record, result)
                return
            if result.progress and result.progress != record.placement:
                self.sessions.note_progress(record.id, result.progress)
        if now >= record.expires_at:
            self.sessions.stop(SYSTEM, record.id, final=S.expired, reason=N_("its time ran out"))
            return
        started_for = (now - record.created_at).total_seconds()
        if record.state in (S.pending, S.starting) and started_for > self.settings.start_timeout:
            self.sessions.fail(record.id, N_("did not become ready within %(seconds)s s")
                               % {"seconds": self.settings.start_timeout})
            return
        if self._warning_due(record, now):
            self.sessions.warn_expiry(record.id)

    def _warning_due(self, record: SessionRecord, now: datetime) -> bool:
        """Whether a lead time before expiry has been reached since the last warning (one warning per lead time;
        lead times passed together give one)."""
        for lead in self.settings.expiry_warning:
            warn_at = record.expires_at - timedelta(seconds=lead)
            if now >= warn_at and (record.warned_at is None or record.warned_at < warn_at):
                return True
        return False

    def _ended(self, record: SessionRecord, result: PollResult) -> None:
        """A session whose processes are gone: completed if its program exited 0, else failed with the reason."""
        if result.reason:
            self.sessions.fail(record.id, result.reason)
        else:
            self.sessions.exited(record.id, result.status)

    async def run_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except Exception:
                log.exception("reconciler round failed")
            await asyncio.sleep(self.settings.reconcile_interval)

    def close(self) -> None:
        self.leader.release()
