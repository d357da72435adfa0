"""What every `beamhub` subcommand shares: the --config option, the settings, the services, who acts."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from beamhub.config import ConfigError, Settings, load_settings
from beamhub.identity.principal import Principal

if TYPE_CHECKING:
    from beamhub.services import Services

err = Console(stderr=True)
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="TOML configuration file")]


def cli_settings(config: Path | None) -> Settings:
    """The settings, or a readable message and exit status 2."""
    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def cli_principal() -> Principal:
    """Who the audit log names for a change made on the command line: the local account."""
    return Principal(username=f"cli:{getpass.getuser()}", user_id=None, roles=frozenset({"admin"}))


def cli_services(config: Path | None) -> Services:
    """The services of this configuration (imported when a command needs them: `beamhub --help` stays quick)."""
    from beamhub.services import build_services

    return build_services(cli_settings(config))
