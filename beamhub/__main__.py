"""The `beamhub` command (and `python -m beamhub`).

The command line is imported when the command runs, not when this module is: every worker
process of a registration imports the program's main module (see data/registration/scan.py), and the
whole command line costs each of them half a second of CPU.
"""

from __future__ import annotations


def main() -> None:
    """Run the command line."""
    from beamhub.cli import app

    app()


if __name__ == "__main__":
    main()
