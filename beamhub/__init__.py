"""beamhub: the computing platform of a synchrotron light source."""

__version__ = "0.1.0"
