"""Sessions on a server of two worker processes: whichever process starts a session, the one that leads follows it
to its end, with the reason in words, and a stop through either ends it."""

from __future__ import annotations

from typing import Any

SLEEP = {"kind": "command", "command": "sleep", "args": ["600"], "memory": "64Mi", "ncores": 0.1}
ENDED = {"completed", "failed", "stopped"}


def test_sessions_started_through_either_process_run_end_and_stop(make_hub: Any, kit: Any) -> None:
    server = make_hub(BEAMHUB_WORKERS="2")
    _, token = server.create_user()
    sessions = kit(server)
    running = [sessions.running(token, **SLEEP) for _ in range(4)]  # each request on a new connection
    for session in running:
        sessions.stop(session["id"])
        assert server.wait_for_state(session["id"], ENDED, timeout=30)["state"] == "stopped"
    for _ in range(3):
        failing = sessions.start(token, kind="command", command="sh", args=["-c", "exit 3"], memory="64Mi")
        finishing = sessions.start(token, kind="command", command="true", memory="64Mi")
        ended = server.wait_for_state(failing["id"], ENDED, timeout=30)
        assert ended["state"] == "failed", ended
        assert "exit status 3" in ended["reason"], ended
        assert server.wait_for_state(finishing["id"], ENDED, timeout=30)["state"] == "completed"
