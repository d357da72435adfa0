"""What each session kind runs inside the agent, given its image environment.

Kinds are found through the `beamhub.kinds` entry points (beamhub's own `jupyter` and `command` included): a site adds
one by installing a package whose entry point names a function with the signature of `jupyter` below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from beamhub.errors import Invalid

SOCKET_NAME = "http.sock"
"""The Unix socket a session's program answers on, inside its private runtime directory."""


@dataclass(frozen=True)
class KindProgram:
    """The program the agent starts, the path that answers once it is up, and extra env."""

    argv: list[str]
    ready_path: str = ""
    env: dict[str, str] = field(default_factory=dict)


def proxy_prefix(session_id: str) -> str:
    return f"/s/{session_id}/"


def jupyter(image: Path, session_id: str, socket: Path, token: str, command: str | None,
            args: list[str]) -> KindProgram:
    """JupyterLab on the session's Unix socket, under the proxy's prefix, trusting only the session token."""
    prefix = proxy_prefix(session_id)
    return KindProgram(
        argv=[str(image / "bin" / "jupyter-lab"), "--no-browser", f"--ServerApp.sock={socket}",
              "--ServerApp.sock_mode=0600", f"--ServerApp.base_url={prefix}", "--ServerApp.allow_remote_access=True",
              "--ServerApp.quit_button=False"],
        ready_path=f"{prefix}api/status",
        env={"JUPYTER_TOKEN": token},
    )


def command(image: Path, session_id: str, socket: Path, token: str, command: str | None,
            args: list[str]) -> KindProgram:
    """The seed's single_cmd with its arguments, found on the image's PATH; a web server it runs listens on
    $BEAMHUB_SOCKET."""
    if not command:
        raise Invalid("a command session needs a command")
    return KindProgram(argv=[command, *args],
                       env={"BEAMHUB_SOCKET": str(socket), "BEAMHUB_BASE_URL": proxy_prefix(session_id),
                            "BEAMHUB_SESSION_TOKEN": token})


GROUP = "beamhub.kinds"
Kind = Callable[[Path, str, Path, str, str | None, list[str]], KindProgram]


def kind_names() -> list[str]:
    """The kinds installed now."""
    return sorted({point.name for point in entry_points(group=GROUP)})


def find_kind(kind: str) -> Kind:
    """The kind's program builder from its entry point; Invalid for a kind no installed package provides."""
    points = entry_points(group=GROUP, name=kind)
    if not points:
        raise Invalid("unknown session kind %(kind)r; known: %(known)s", kind=kind, known=", ".join(kind_names()))
    return next(iter(points)).load()


def program_for(kind: str, image: Path, session_id: str, socket: Path, token: str, command: str | None,
                args: list[str]) -> KindProgram:
    """The program for a kind; Invalid for an unknown kind."""
    return find_kind(kind)(image, session_id, socket, token, command, args)
