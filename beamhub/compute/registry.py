"""Backends found through the `beamhub.backends` entry points (beamhub's own included), so that a site adds one by
installing a package, without editing beamhub."""

from __future__ import annotations

from importlib.metadata import entry_points

from beamhub.compute.backend import Backend
from beamhub.config import ConfigError, Settings

GROUP = "beamhub.backends"


def backend_names() -> list[str]:
    """The names of the backends installed now."""
    return sorted({point.name for point in entry_points(group=GROUP)})


def make_backend(settings: Settings) -> Backend:
    """The backend `settings.backend` names: its entry point's class (or factory) called with the settings."""
    points = entry_points(group=GROUP, name=settings.backend)
    if not points:
        raise ConfigError(f"unknown backend {settings.backend!r}; installed: {', '.join(backend_names()) or 'none'}")
    factory = next(iter(points)).load()
    return factory(settings)
