"""`beamhub data` and `beamhub proposal`: registration, ACLs and members from the command line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from beamhub.cli_support import ConfigOption, cli_principal, cli_services, cli_settings, err
from beamhub.data.models import MemberRole
from beamhub.errors import BeamhubError

data_app = typer.Typer(help="Register proposal data and keep its ACLs.", no_args_is_help=True)
proposal_app = typer.Typer(help="Manage proposals and their members.", no_args_is_help=True)
console = Console()


@contextmanager
def _errors() -> Iterator[None]:
    """A service error becomes a red message and exit status 1, not a traceback."""
    try:
        yield
    except BeamhubError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False)


@contextmanager
def _phases(labels: dict[str, str]) -> Iterator[Callable[[str, int], None]]:
    """A progress bar per phase; yields progress(phase, running total)."""
    with _progress() as bar:
        tasks: dict[str, Any] = {}

        def report(phase: str, done: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(labels.get(phase, phase), total=None)
            bar.update(tasks[phase], completed=done)

        yield report


@data_app.command("register")
def register(path: Path, proposal: Annotated[str, typer.Option("--proposal", "-p", help="e.g. 2024-00123")],
             config: ConfigOption = None) -> None:
    """Set the ACLs of PATH (a folder or file of the proposal) and record its files with their SHA-256."""
    services = cli_services(config)
    labels = {"acl": "ACLs set", "files": "files catalogued", "refused": "hard links refused"}
    with _errors(), _phases(labels) as report:
        result = services.registration.register_path(cli_principal(), proposal, path, report)
    console.print(f"{result.files} files: {result.added} added, {result.updated} updated, "
                  f"{result.unchanged} unchanged, {result.removed} removed, {result.skipped} skipped; "
                  f"{result.hashed_bytes} bytes hashed, {result.acl_paths} ACLs set")
    _print_refused(result.refused)


def _print_refused(refused: list[str]) -> None:
    """Name the hard-linked files a registration refused, on stderr."""
    if refused:
        err.print(f"[yellow]refused {len(refused)} hard-linked files with names outside the proposal "
                  f"(ACL left alone, not catalogued):[/yellow] {escape(', '.join(refused[:20]))}"
                  + (" ..." if len(refused) > 20 else ""))


@data_app.command("sync-acls")
def sync_acls(config: ConfigOption = None) -> None:
    """Rewrite the ACLs of every proposal whose members changed since its ACLs were last written."""
    services = cli_services(config)
    with _errors(), _phases({}) as report:
        done = services.data.sync_acls(report)
    console.print(f"ACLs rewritten for {len(done)} proposals" + (f": {', '.join(done)}" if done else ""))


@data_app.command("release-embargoes")
def release_embargoes(config: ConfigOption = None) -> None:
    """Open the data of every proposal whose embargo has ended to all users (run it from cron)."""
    with _errors():
        released = cli_services(config).data.release_embargoes()
    console.print(f"{len(released)} proposals made public" + (f": {', '.join(released)}" if released else ""))


def _when(value: str) -> datetime:
    """An ISO date or time; UTC when it names no zone."""

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an ISO date or time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@proposal_app.command("create")
def proposal_create(proposal_id: str, title: Annotated[str, typer.Option()],
                    beamline: Annotated[str, typer.Option()], start: Annotated[str, typer.Option()],
                    end: Annotated[str, typer.Option()], embargo: str | None = None, tier: str | None = None,
                    pi: Annotated[list[str] | None, typer.Option()] = None,
                    member: Annotated[list[str] | None, typer.Option()] = None,
                    config: ConfigOption = None) -> None:
    """Create a proposal, its folder and its ACLs."""
    from pydantic import ValidationError

    from beamhub.data.proposals.schemas import ProposalCreate

    members = [{"username": u, "role": "pi"} for u in pi or []] + [{"username": u} for u in member or []]
    try:
        body = ProposalCreate(id=proposal_id, title=title, beamline=beamline, beamtime_start=_when(start),
                              beamtime_end=_when(end), embargo_until=_when(embargo) if embargo else None,
                              tier=tier, members=members)
    except ValidationError as exc:
        err.print(f"[red]invalid:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    services = cli_services(config)
    with _errors():
        proposal = services.data.create(cli_principal(), body)
    console.print(f"created {proposal.id} at {services.data.proposal_dir(proposal)}")


@proposal_app.command("list")
def proposal_list(config: ConfigOption = None) -> None:
    """List proposals."""
    services = cli_services(config)
    table = Table("id", "beamline", "tier", "title", "members", "embargo until", "public")
    after = None
    while page := services.data.list(cli_principal(), after, 1000):
        for p in page:
            table.add_row(p.id, p.beamline, p.tier, escape(p.title),
                          ", ".join(f"{m.user.username} ({m.role.value})" for m in p.members),
                          p.embargo_until.strftime("%Y-%m-%d") if p.embargo_until else "",
                          "yes" if p.embargo_released_at else "no")
        after = page[-1].id
    console.print(table)


def _member_change(change: Callable[[Callable[[int], None]], object]) -> None:
    with _errors(), _progress() as bar:
        task = bar.add_task("ACLs rewritten", total=None)
        change(lambda done: bar.update(task, completed=done))


@proposal_app.command("add-member")
def add_member(proposal_id: str, username: str, role: MemberRole = MemberRole.member,
               config: ConfigOption = None) -> None:
    """Add a member (or change their role) and rewrite the ACL of every file of the proposal."""
    data = cli_services(config).data
    _member_change(lambda report: data.set_member(cli_principal(), proposal_id, username, role, report))
    console.print(f"{username} is {role.value} of {proposal_id}")


@proposal_app.command("remove-member")
def remove_member(proposal_id: str, username: str, config: ConfigOption = None) -> None:
    """Remove a member and rewrite the ACL of every file of the proposal."""
    data = cli_services(config).data
    _member_change(lambda report: data.remove_member(cli_principal(), proposal_id, username, report))
    console.print(f"{username} is no longer a member of {proposal_id}")


@data_app.command("who-can-read")
def who_can_read(path: Path, config: ConfigOption = None) -> None:
    """The users and groups that can read PATH (under the storage root), from its real ACL, and their ways in."""
    from beamhub.data.paths import is_inside
    from beamhub.data.who import path_readers

    services = cli_services(config)
    real = path.resolve()
    if not is_inside(services.settings.storage_root.resolve(), real):
        err.print(f"[red]error:[/red] {escape(str(path))} is not under the storage root "
                  f"{escape(str(services.settings.storage_root))}")
        raise typer.Exit(1)
    with _errors():
        users, groups = path_readers(real, services.identity, services.settings)
    table = Table("user", "uid", "granted by", "ways in", title=f"who can read {escape(str(real))}")
    for user in users:
        table.add_row(escape(user.username), str(user.uid), escape(user.via), ", ".join(user.paths) or "none")
    console.print(table)
    if groups:
        named = Table("group", "gid", "members read", title="groups named in its ACL")
        for group in groups:
            named.add_row(escape(group.name), str(group.gid), "yes" if group.reads else "[red]no[/red]")
        console.print(named)


@data_app.command("smb-config")
def smb_config(share: Annotated[str, typer.Option(help="the share's name")] = "beamlinefs",
               config: ConfigOption = None) -> None:
    """Print smb.conf: the idmap section and a read-only share of the storage root that honours the POSIX ACLs."""
    from beamhub.data.browsing.smb import smb_conf

    settings = cli_settings(config)
    with _errors():
        typer.echo(smb_conf(settings, share), nl=False)


@data_app.command("watch")
def watch(proposal: Annotated[str, typer.Option("--proposal", "-p", help="e.g. 2024-00123")],
          path: Annotated[Path | None, typer.Argument(
              help="a folder of the proposal; default: its folder on its own tier")] = None,
          config: ConfigOption = None) -> None:
    """Register files as the DAQ closes them (inotify): ACLs and catalogue, in batches, until SIGINT or SIGTERM."""
    import signal
    import threading

    from beamhub.data.registration.ingest import RegisterResult
    from beamhub.data.registration.watch import ProposalWatcher

    def report(kind: str, result: RegisterResult) -> None:
        console.print(f"{datetime.now():%H:%M:%S} {kind}: {result.files} files, {result.added} added, "
                      f"{result.updated} updated, {result.acl_paths} ACLs set, {len(result.refused)} refused")
        _print_refused(result.refused)
        if kind == "start-up":
            console.print(f"watching {escape(str(watcher.target.start))} (stop with Ctrl-C or SIGTERM)")

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    services = cli_services(config)
    with _errors():
        watcher = ProposalWatcher(services.registration, cli_principal(), proposal, path, report)
        summary = watcher.run(stop)
    console.print(f"stopped: {summary.files} files registered in {summary.batches} batches "
                  f"({summary.started.files} files seen at start-up, {summary.rescans} rescans after lost events), "
                  f"{len(summary.refused)} hard-linked files refused")


@data_app.command("migrate")
def migrate(proposal: Annotated[str, typer.Option("--proposal", "-p", help="e.g. 2024-00123")],
            to: Annotated[str, typer.Option("--to", help="the tier to move the data to, e.g. warm")],
            config: ConfigOption = None) -> None:
    """Move a proposal's data to another tier with its ACLs, xattrs and mtimes; run it again to finish a killed one."""
    from beamhub.data.tiers.migrate import migrate_proposal

    services = cli_services(config)
    labels = {"copy": "files copied and verified", "remove": "files removed from the old tier"}
    with _errors(), _phases(labels) as report:
        result = migrate_proposal(services.data, cli_principal(), proposal, to,
                                  lambda phase, _bytes, files: report(phase, files))
    console.print(f"{result.proposal_id}: {result.from_tier} -> {result.to_tier}; {result.files_copied} copied, "
                  f"{result.files_skipped} already there, {result.files_verified} verified, "
                  f"{result.bytes_copied} bytes; {result.files_removed} removed from {result.from_tier} "
                  f"in {result.seconds:.1f} s")
    if result.kept:
        err.print("[yellow]left on the old tier (they differ from their copy):[/yellow] "
                  f"{escape(', '.join(result.kept[:20]))}")
        raise typer.Exit(1)


@data_app.command("prefetch")
def prefetch(proposal: Annotated[str, typer.Option("--proposal", "-p", help="e.g. 2024-00123")],
             config: ConfigOption = None) -> None:
    """Copy a proposal's data to the fast tier (the first of storage_tiers), moving the least recently used back."""
    from beamhub.data.tiers.prefetch import prefetch_proposal

    services = cli_services(config)
    labels = {"queued": "waiting for another prefetch", "evict": "files moved back to make room",
              "copy": "files copied and verified", "remove": "files removed from the old tier"}
    with _errors(), _phases(labels) as report:
        result = prefetch_proposal(services.data, cli_principal(), proposal,
                                   lambda phase, _bytes, files: report(phase, files))
    if result.already_there:
        console.print(f"{result.proposal_id} is on tier {result.tier} already")
        return
    console.print(f"{result.proposal_id}: {result.from_tier} -> {result.tier}; {result.files_copied} copied, "
                  f"{result.files_verified} verified, {result.bytes_copied} bytes in {result.seconds:.1f} s"
                  + (f"; moved back to make room: {', '.join(result.evicted)}" if result.evicted else ""))
    if result.kept:
        err.print("[yellow]left on the old tier (they differ from their copy):[/yellow] "
                  f"{escape(', '.join(result.kept[:20]))}")
        raise typer.Exit(1)


@data_app.command("link-current")
def link_current(config: ConfigOption = None) -> None:
    """Point every proposal's stable path (storage_root/current/<beamline>/<proposal>) at the tier the catalogue
    names: once for proposals made before stable paths existed; it changes nothing where they are right."""
    from sqlalchemy import select

    from beamhub.data.current import point_current
    from beamhub.data.models import Proposal

    services = cli_services(config)
    with services.db.session() as db:
        rows = db.execute(select(Proposal.beamline, Proposal.id, Proposal.tier).order_by(Proposal.id)).all()
    root = services.settings.storage_root
    changed = [proposal for beamline, proposal, tier in rows if point_current(root, beamline, proposal, tier)]
    console.print(f"{len(changed)} of {len(rows)} stable paths made or re-pointed"
                  + (f": {escape(', '.join(changed[:20]))}{' ...' if len(changed) > 20 else ''}" if changed else ""))
