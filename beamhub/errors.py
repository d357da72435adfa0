"""Errors the services raise; the app turns each into an HTTP status with a JSON detail."""


class BeamhubError(Exception):
    """Base of errors a user can act on; str(error) is the message shown."""

    status_code = 400


class NotFound(BeamhubError):
    status_code = 404


class Conflict(BeamhubError):
    status_code = 409


class Invalid(BeamhubError):
    status_code = 422


class Unauthenticated(BeamhubError):
    status_code = 401


class Forbidden(BeamhubError):
    status_code = 403


class InsufficientResources(BeamhubError):
    """The node cannot give what was asked, now or ever."""

    status_code = 409


class HostRefused(BeamhubError):
    """The host refused a change beamhub made to it (useradd, groupadd, usermod): a server-side failure whose
    reason goes to the log."""

    status_code = 500


class NotReady(BeamhubError):
    status_code = 503


class TooManyRequests(BeamhubError):
    status_code = 429
