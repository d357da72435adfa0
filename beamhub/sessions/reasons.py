"""Why a session's program ended, in words a scientist reads (never a bare exit status)."""

from __future__ import annotations

import signal

FINISHED = "the program finished successfully"

_STATUS_WORDS = {
    1: "the program stopped with an error (exit status 1); its log shows what it printed",
    2: "the program was started with arguments it does not accept (exit status 2); its log shows what it printed",
    125: "beamhub could not place the session in its resource limits (exit status 125)",
    126: "the program could not be run: it is not executable (exit status 126)",
    127: "the program was not found in the session's image (exit status 127)",
}

_SIGNAL_WORDS = {
    signal.SIGKILL: "it was killed (SIGKILL), most often for using more memory than the session has",
    signal.SIGTERM: "it was asked to stop (SIGTERM) by something other than beamhub",
    signal.SIGSEGV: "it crashed (SIGSEGV, a fault in the program or a library it uses)",
    signal.SIGABRT: "it aborted (SIGABRT, an internal error of the program)",
}


def killed_by(sig: int) -> str:
    """A signal that ended the program, in words."""
    try:
        name = signal.Signals(sig)
    except ValueError:
        return f"the program was killed by signal {sig}"
    return "the program ended: " + _SIGNAL_WORDS.get(name, f"it was killed by {name.name}")


def exit_reason(status: int | None) -> str:
    """What an exit status of a session's program means: a negative one is the signal that killed it, and so is
    one above 128 (a shell's way to say it)."""
    if status is None:
        return "the program's processes are gone; beamhub could not learn why"
    if status == 0:
        return FINISHED
    if status < 0:
        return killed_by(-status)
    if status > 128 and status not in _STATUS_WORDS:
        return killed_by(status - 128)
    return _STATUS_WORDS.get(status, f"the program stopped with an error (exit status {status}); its log shows "
                                     "what it printed")
