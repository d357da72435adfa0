"""The one Settings object: a TOML file plus BEAMHUB_* environment overrides."""

from __future__ import annotations

import os
import sys
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "BEAMHUB_CONFIG"
_config_file: ContextVar[Path | None] = ContextVar("beamhub_config_file", default=None)


class Settings(BaseSettings):
    """Everything beamhub can be told; every field has an embedded default."""

    model_config = SettingsConfigDict(env_prefix="BEAMHUB_", env_nested_delimiter="__", extra="forbid")

    state_dir: Path = Path("/var/lib/beamhub")
    database_url: str | None = None
    bind: str = "127.0.0.1:8000"
    public_url: str | None = Field(None, description="URL the session agents use to reach beamhub")
    admin_token: SecretStr | None = None

    backend: str = "local"
    images: dict[str, Path] = {"default": Path("/opt/beamhub/images/default")}
    default_image: str = "default"
    agent_python: Path = Path(sys.executable)
    home_root: Path = Path("/home")

    uid_min: int = 20000
    uid_max: int = 29999
    gid_min: int = 30000
    gid_max: int = 39999
    manage_system_accounts: bool = True

    node_cpus: float | None = None
    node_memory: str | None = None
    gpus: list[str] = []
    overcommit: bool = False
    port_min: int = 40000
    port_max: int = 40999

    default_runtime: int = 86400
    max_runtime: int = 30 * 86400
    expiry_warning: int = 300
    start_timeout: int = 120
    stop_grace: float = 5.0
    reconcile_interval: float = 2.0
    heartbeat_interval: float = 30.0

    @field_validator("bind")
    @classmethod
    def _bind_has_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("bind must be HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:8000")
        return value

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> Settings:
        for low, high in (("uid_min", "uid_max"), ("gid_min", "gid_max"), ("port_min", "port_max")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) is above {high} ({getattr(self, high)})")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'beamhub.db'}"

    @property
    def host(self) -> str:
        return self.bind.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.bind.rpartition(":")[2])

    @property
    def callback_url(self) -> str:
        return (self.public_url or f"http://{self.bind}").rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _config_file.get() or os.environ.get(CONFIG_ENV)
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (argument, else $BEAMHUB_CONFIG) and the environment, which wins."""
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"configuration file {config_file} does not exist")
    elif (path := os.environ.get(CONFIG_ENV)) and not Path(path).is_file():
        raise ConfigError(f"{CONFIG_ENV}={path} does not exist")
    chosen = _config_file.set(config_file)
    try:
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file or os.environ.get(CONFIG_ENV)} is not valid TOML: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    finally:
        _config_file.reset(chosen)
