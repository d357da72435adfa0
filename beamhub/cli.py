"""The `beamhub` command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from beamhub.config import ConfigError, Settings, load_settings
from beamhub.errors import BeamhubError

app = typer.Typer(help="beamhub: sessions, data and one identity for a light source.", no_args_is_help=True)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
session_app = typer.Typer(help="Inspect and stop sessions.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(session_app, name="session")
console = Console()
err = Console(stderr=True)

ConfigOption = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML configuration file")]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _services(config: Path | None):  # type: ignore[no-untyped-def]
    from beamhub.app import build_services

    return build_services(_settings(config))


@app.command()
def serve(config: ConfigOption = None, reload: bool = False) -> None:
    """Run the beamhub server (API, proxy and reconciler)."""
    import uvicorn

    from beamhub.app import create_app

    settings = _settings(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        application = create_app(settings)
    except (ConfigError, BeamhubError, OSError) as exc:
        err.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"beamhub listening on http://{settings.bind} (state in {settings.state_dir})")
    uvicorn.run(application, host=settings.host, port=settings.port, log_level="info")


@user_app.command("create")
def user_create(username: str, uid: Optional[int] = None, group: Annotated[Optional[list[str]], typer.Option()] = None,
                admin: bool = False, config: ConfigOption = None) -> None:
    """Create a user and its system account."""
    services = _services(config)
    try:
        user = services.identity.create_user(username, uid=uid, groups=group or [], roles=["admin"] if admin else None)
    except BeamhubError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"created {user.username} (uid {user.uid}, gid {user.gid})")


@user_app.command("token")
def user_token(username: str, name: str = "cli", expires_in: Optional[int] = None,
               config: ConfigOption = None) -> None:
    """Issue an API token for a user (printed once)."""
    services = _services(config)
    try:
        token, _ = services.identity.issue_token(username, name, expires_in)
    except BeamhubError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(token)


@user_app.command("list")
def user_list(config: ConfigOption = None) -> None:
    """List users."""
    table = Table("username", "uid", "gid", "groups", "roles", "state")
    for user in _services(config).identity.list_users(0, 10_000):
        table.add_row(user.username, str(user.uid), str(user.gid), ",".join(user.groups), ",".join(user.roles),
                      user.state.value)
    console.print(table)


@session_app.command("list")
def session_list(all_states: Annotated[bool, typer.Option("--all")] = False, config: ConfigOption = None) -> None:
    """List sessions (active ones unless --all)."""
    from beamhub.sessions.service import SYSTEM
    from beamhub.units import format_size

    table = Table("id", "user", "name", "kind", "state", "cores", "memory", "gpus", "expires")
    for r in _services(config).sessions.list(SYSTEM, active_only=not all_states):
        table.add_row(r.id, r.user.username, r.name, r.kind, r.state.value, f"{r.ncores:g}", format_size(r.memory),
                      str(r.gpus), r.expires_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@session_app.command("stop")
def session_stop(session_id: str, config: ConfigOption = None) -> None:
    """Stop a session."""
    from beamhub.sessions.service import SYSTEM

    try:
        record = _services(config).sessions.stop(SYSTEM, session_id)
    except BeamhubError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{record.id}: {record.state.value}")
