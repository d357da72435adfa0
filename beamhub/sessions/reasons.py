"""Why a session's program ended, in words a scientist reads (never a bare exit status).

The reason is stored in English; each text is a template marked for extraction, and the console shows its
translation filled with the same values (beamhub/web/stored_text.py)."""

from __future__ import annotations

import signal

from beamhub.errors import N_

FINISHED = N_("the program finished successfully")

_STATUS_WORDS = {
    1: N_("the program stopped with an error (exit status 1); its log shows what it printed"),
    2: N_("the program was started with arguments it does not accept (exit status 2); its log shows what it printed"),
    125: N_("beamhub could not place the session in its resource limits (exit status 125)"),
    126: N_("the program could not be run: it is not executable (exit status 126)"),
    127: N_("the program was not found in the session's image (exit status 127)"),
}

_SIGNAL_WORDS = {
    signal.SIGKILL: N_("the program ended: it was killed (SIGKILL), most often for using more memory than the session "
                       "has"),
    signal.SIGTERM: N_("the program ended: it was asked to stop (SIGTERM) by something other than beamhub"),
    signal.SIGSEGV: N_("the program ended: it crashed (SIGSEGV, a fault in the program or a library it uses)"),
    signal.SIGABRT: N_("the program ended: it aborted (SIGABRT, an internal error of the program)"),
}


def killed_by(sig: int) -> str:
    """A signal that ended the program, in words."""
    try:
        name = signal.Signals(sig)
    except ValueError:
        return N_("the program was killed by signal %(signal)s") % {"signal": sig}
    return _SIGNAL_WORDS.get(name) or N_("the program ended: it was killed by %(signal)s") % {"signal": name.name}


def exit_reason(status: int | None) -> str:
    """What an exit status of a session's program means: a negative one is the signal that killed it, and so is
    one above 128 (a shell's way to say it)."""
    if status is None:
        return N_("the program's processes are gone; beamhub could not learn why")
    if status == 0:
        return FINISHED
    if status < 0:
        return killed_by(-status)
    if status > 128 and status not in _STATUS_WORDS:
        return killed_by(status - 128)
    return _STATUS_WORDS.get(status) or N_("the program stopped with an error (exit status %(status)s); its log "
                                           "shows what it printed") % {"status": status}
