"""The client library is imported from this checkout (clients/beamhub-stream), as the default image installs it."""

from __future__ import annotations

import sys
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "beamhub-stream"
if str(CLIENT) not in sys.path:
    sys.path.insert(0, str(CLIENT))
