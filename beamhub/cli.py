"""The `beamhub` command."""

from __future__ import annotations

import typing
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from beamhub.cli_support import ConfigOption, cli_principal, cli_services, cli_settings, err
from beamhub.config import ConfigError
from beamhub.data.cli import data_app, proposal_app
from beamhub.errors import BeamhubError

app = typer.Typer(help="beamhub: sessions, data and one identity for a light source.", no_args_is_help=True)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
session_app = typer.Typer(help="Inspect and stop sessions.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(session_app, name="session")
app.add_typer(proposal_app, name="proposal")
app.add_typer(data_app, name="data")
console = Console()

@app.command()
def serve(config: ConfigOption = None, reload: bool = False) -> None:
    """Run the beamhub server (API, proxy and reconciler)."""
    import uvicorn

    from beamhub.app import create_app
    from beamhub.workers import configure_logging, keep_out_of_collections, prepare_workers

    settings = cli_settings(config)
    configure_logging()
    try:
        application = create_app(settings)  # checks and migrates once, before any worker starts
    except (ConfigError, BeamhubError, OSError) as exc:
        err.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(1) from exc
    if settings.workers > 1:
        application.state.services.db.dispose()
        prepare_workers(settings, config)
    keep_out_of_collections()
    console.print(f"beamhub listening on http://{settings.bind} (state in {settings.state_dir}, "
                  f"{settings.workers} worker process{'es' if settings.workers > 1 else ''})")
    # X-Forwarded-For/-Proto count only from the configured proxies: sessions run on this host's loopback too.
    trusted = ",".join(settings.trusted_proxies)
    # No per-message deflate on beamhub's websockets: sessions' kernels do not compress theirs, and detector
    # frames would cost the relay CPU on every frame for little gain on the facility's network.
    uvicorn.run(application if settings.workers == 1 else "beamhub.workers:worker_app", factory=settings.workers > 1,
                workers=settings.workers, host=settings.host, port=settings.port, log_level="info",
                proxy_headers=bool(trusted), forwarded_allow_ips=trusted or None, ws_per_message_deflate=False)


@user_app.command("create")
def user_create(username: str, uid: int | None = None, group: Annotated[list[str] | None, typer.Option()] = None,
                admin: bool = False, config: ConfigOption = None) -> None:
    """Create a user and its system account."""
    services = cli_services(config)
    try:
        user = services.identity.create_user(username, uid=uid, groups=group or [], roles=["admin"] if admin else None,
                                             by=cli_principal())
    except BeamhubError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"created {user.username} (uid {user.uid}, gid {user.gid})")


@user_app.command("token")
def user_token(username: str, name: str = "cli", expires_in: int | None = None,
               config: ConfigOption = None) -> None:
    """Issue an API token for a user (printed once)."""
    services = cli_services(config)
    try:
        token, _ = services.identity.issue_token(username, name, expires_in, by=cli_principal())
    except BeamhubError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(token)


@user_app.command("password")
def user_password(username: str, password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="read the password from standard input's first line")] = False,
        config: ConfigOption = None) -> None:
    """Set a user's local (argon2id) login password; asked twice unless --password-stdin."""
    import sys

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    services = cli_services(config)
    try:
        services.login.set_password(cli_principal(), username, password)
    except BeamhubError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"password of {username} set")


@user_app.command("list")
def user_list(config: ConfigOption = None) -> None:
    """List users."""
    table = Table("username", "uid", "gid", "groups", "roles", "state")
    for user in cli_services(config).identity.list_users(0, 10_000, by=cli_principal()):
        table.add_row(user.username, str(user.uid), str(user.gid), ",".join(user.groups), ",".join(user.roles),
                      user.state.value)
    console.print(table)


@session_app.command("list")
def session_list(all_states: Annotated[bool, typer.Option("--all")] = False, config: ConfigOption = None) -> None:
    """List sessions (active ones unless --all)."""
    from beamhub.units import format_size

    table = Table("id", "user", "name", "kind", "state", "cores", "memory", "gpus", "expires")
    for r in cli_services(config).sessions.list(cli_principal(), active_only=not all_states):
        table.add_row(r.id, r.user.username, r.name, r.kind, r.state.value, f"{r.ncores:g}", format_size(r.memory),
                      str(r.gpus), r.expires_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@session_app.command("stop")
def session_stop(session_id: str, config: ConfigOption = None) -> None:
    """Stop a session."""
    try:
        record = cli_services(config).sessions.stop(cli_principal(), session_id)
    except BeamhubError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{record.id}: {record.state.value}")


def _since(value: str | None) -> datetime | None:
    """An ISO timestamp (UTC when it names no zone), or an age such as 30m, 12h, 7d."""
    from datetime import timedelta

    if not value:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is neither an ISO time nor an age like 12h") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def audit(actor: str | None = None, action: Annotated[str | None, typer.Option(
              help='exact, or a family such as "session" or "token.*"')] = None,
          since: Annotated[str | None, typer.Option(help="ISO time or an age: 30m, 12h, 7d")] = None,
          failures: Annotated[bool, typer.Option("--failures", help="only failed attempts")] = False,
          limit: int = 100, config: ConfigOption = None) -> None:
    """Show the audit log, newest first."""
    import json

    events = cli_services(config).audit.query(actor=actor, action=action, since=_since(since),
                                           success=False if failures else None, limit=limit, by=cli_principal())
    table = Table("id", "at", "actor", "action", "target", "address", "ok", "detail")
    for e in events:
        table.add_row(str(e.id), e.at.strftime("%Y-%m-%d %H:%M:%S"), escape(e.actor), escape(e.action),
                      escape(e.target), escape(e.address), "yes" if e.success else "[red]no[/red]",
                      escape(json.dumps(e.detail, sort_keys=True)))
    console.print(table)


identity_app = typer.Typer(help="Identity source: system accounts and Windows SIDs.", no_args_is_help=True)
app.add_typer(identity_app, name="identity")

if typing.TYPE_CHECKING:
    from beamhub.identity.accounts.sources import Drift


def _drift_status(item: Drift, dry_run: bool) -> str:
    """How one drift item stands after (or, with dry_run, before) sync."""
    if not item.repairable:
        return "[red]unrepairable[/red]"
    if item.repaired:
        return "[green]repaired[/green]"
    return "would repair" if dry_run else f"[red]failed: {item.error}[/red]"


@identity_app.command("sync")
def identity_sync(dry_run: Annotated[bool, typer.Option("--dry-run", help="report only")] = False,
                  config: ConfigOption = None) -> None:
    """Report drift between the database and pwd/grp (db source) and repair it; exit 1 if some remains."""
    from beamhub.db import Database, migrate
    from beamhub.identity.accounts.sources import sync

    settings = cli_settings(config)
    database = Database(settings.sqlalchemy_url)
    try:
        migrate(database.engine)
        drift = sync(database, settings, dry_run=dry_run)
    except BeamhubError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    finally:
        database.dispose()
    if not drift:
        console.print("no drift: system users and groups match the database")
        return
    table = Table("kind", "name", "problem", "status", title="identity drift" + (" (dry run)" if dry_run else ""))
    for item in drift:
        table.add_row(item.kind, item.name, item.problem, _drift_status(item, dry_run))
    console.print(table)
    if any(not item.repaired and (not dry_run or not item.repairable) for item in drift):
        raise typer.Exit(1)


@identity_app.command("smb-config")
def identity_smb_config(config: ConfigOption = None) -> None:
    """Print the smb.conf global section (idmap_rid) that matches beamhub's SID mapping."""
    from beamhub.identity.windows.service import smb_config

    typer.echo(smb_config(cli_settings(config)), nl=False)
