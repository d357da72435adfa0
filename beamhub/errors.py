"""Errors the services raise; the app turns each into an HTTP status with a JSON `detail` and `code`.

A message is an English template whose `%(name)s` placeholders are filled from the keyword arguments:
`raise NotFound("no session %(session)s", session=session_id)`. The API answers the filled English text (stable,
for scripts) with the error's machine `code`; the console shows the template's translation filled with the same
values. Every template is found by babel (the error classes are extraction keywords: see beamhub/web/README.md).
"""

from __future__ import annotations


class BeamhubError(Exception):
    """Base of errors a user can act on; str(error) is the message in English."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, /, **fields: object) -> None:
        super().__init__(message % fields if fields else message)
        self.template = message
        self.fields = fields


class NotFound(BeamhubError):
    status_code = 404
    code = "not_found"


class Conflict(BeamhubError):
    status_code = 409
    code = "conflict"


class Invalid(BeamhubError):
    status_code = 422
    code = "invalid"


class Unauthenticated(BeamhubError):
    status_code = 401
    code = "unauthenticated"


class Forbidden(BeamhubError):
    status_code = 403
    code = "forbidden"


class InsufficientResources(BeamhubError):
    """The node cannot give what was asked, now or ever."""

    status_code = 409
    code = "insufficient_resources"


class HostRefused(BeamhubError):
    """The host refused a change beamhub made to it (useradd, groupadd, usermod): a server-side failure whose
    reason goes to the log."""

    status_code = 500
    code = "host_refused"


class NotReady(BeamhubError):
    status_code = 503
    code = "not_ready"


class TooManyRequests(BeamhubError):
    status_code = 429
    code = "too_many_requests"


ERROR_KEYWORDS = ("BeamhubError", "NotFound", "Conflict", "Invalid", "Unauthenticated", "Forbidden",
                  "InsufficientResources", "HostRefused", "NotReady", "TooManyRequests", "MigrationRefused")
"""The calls whose first argument is a message to translate (babel's extraction keywords): every subclass of
BeamhubError, wherever it is defined (tests/web/test_catalogue.py checks)."""


def N_(message: str) -> str:
    """Marks a message kept in a constant for extraction; it is translated where it is shown."""
    return message
