"""The one Settings object: a TOML file plus BEAMHUB_* environment overrides."""

from __future__ import annotations

import os
import sys
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from beamhub.units import parse_size

CONFIG_ENV = "BEAMHUB_CONFIG"
_config_file: ContextVar[Path | None] = ContextVar("beamhub_config_file", default=None)


class Settings(BaseSettings):
    """Everything beamhub can be told; every field has an embedded default."""

    model_config = SettingsConfigDict(env_prefix="BEAMHUB_", env_nested_delimiter="__", extra="forbid")

    state_dir: Path = Path("/var/lib/beamhub")
    database_url: str | None = None
    bind: str = "127.0.0.1:8000"
    workers: int = Field(1, ge=1, le=64, description="server processes answering on bind, each with its own "
                                                    "threads: a second one about doubles what the API answers on "
                                                    "two cores or more. The live-frame relay needs one")
    public_url: str | None = Field(None, description="URL the session agents use to reach beamhub")
    session_url: str | None = Field(
        None, pattern=r"^https?://[^/]*\{session\}[^/]*/?$",
        description="origin of each session, {session} standing for its id, e.g. https://{session}.example-"
                    "sessions.org (a wildcard DNS name and certificate, under a registrable domain other than the "
                    "console's). Default: http://{session}.sessions.localhost:PORT on bind's port, which browsers "
                    "resolve to this machine by themselves")
    metrics_token: SecretStr | None = Field(None, description="bearer token Prometheus scrapes /metrics with")
    metrics_allow: list[str] = Field([], description="addresses or networks that may read /metrics without the token")
    trusted_proxies: list[str] = Field(
        [], description="addresses (or networks) of reverse proxies whose X-Forwarded-For/-Proto count; "
                        "never the network sessions run on")
    admin_token: SecretStr | None = None

    backend: str = Field("local", description="where sessions run: local (this host), slurm (jobs on a Slurm "
                                               "cluster), or a backend a site installs (entry point "
                                               "beamhub.backends)")
    images: dict[str, Path] = {"default": Path("/opt/beamhub/images/default")}
    default_image: str = "default"
    agent_python: Path = Path(sys.executable)
    home_root: Path = Path("/home")

    uid_min: int = 20000
    uid_max: int = 29999
    gid_min: int = 30000
    gid_max: int = 39999
    manage_system_accounts: bool = True
    host_groups: list[str] = Field([], description="host groups outside gid_min-gid_max that beamhub may record and "
                                                   "give members (e.g. a directory's groups on the nss source, or "
                                                   "render for GPUs); a user's private group never")

    login_methods: list[str] = ["password"]
    pam_service: str = "login"
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_username_claim: str = "preferred_username"
    oidc_scopes: list[str] = ["openid", "profile", "email"]
    oidc_provider_name: str = "single sign-on"
    oidc_auto_create: bool = False
    login_session_ttl: int = 12 * 3600
    login_max_failures: int = 5
    login_failure_window: int = 300
    cookie_secure: bool | None = Field(None, description="None: Secure when the request came over https")
    identity_source: Literal["db", "nss"] = Field(
        "db", description="db: beamhub allocates UIDs/GIDs and keeps system accounts in step; "
                          "nss: existing accounts from pwd/grp (LDAP/SSSD), read-only")

    all_users_group: str | None = Field(
        "beamhub-users", pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="the group every user joins (on the nss source: a group the site keeps); a proposal's data "
                    "becomes readable by it once its embargo ends. None: data never becomes public")

    windows_domain_sid: str | None = Field(None, pattern=r"^S-1-[0-9]+(-[0-9]+)+$",
                                           description="e.g. S-1-5-21-1004336348-1177238915-682003330")
    windows_domain: str = Field("HEPS", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$",
                                description="Samba workgroup / NetBIOS domain name")
    idmap_range_low: int = 20000
    idmap_range_high: int = 39999
    idmap_base_rid: int = Field(0, ge=0)
    idmap_default_low: int = Field(3000, description="range of smb.conf's `idmap config * : range` (tdb)")
    idmap_default_high: int = 7999

    storage_root: Path = Field(Path("/beamlinefs"), description="data root: <tier>/<beamline>/<proposal>/...")
    storage_tiers: list[str] = Field(["hot", "warm"], min_length=1, description="tier folders under storage_root")
    ingest_workers: int = Field(
        default_factory=lambda: min(os.cpu_count() or 1, 8), ge=1, le=64,
        description="processes that set ACLs and hash the files of a large registration (1: beamhub's own only)")
    download_accel_prefix: str | None = Field(
        None, pattern=r"^/[A-Za-z0-9_/-]*$",
        description="behind nginx: answer downloads with X-Accel-Redirect to this internal location")
    tier_budget: dict[str, int] = Field(
        {}, description='bytes each tier may hold for prefetched data, e.g. {hot = "20T"}; a prefetch first moves the '
                        "least recently used proposals back to the next tier. A tier not named has no budget")
    prefetch_lead: int = Field(6 * 3600, ge=0, description="seconds before its beamtime begins that a proposal's data "
                                                           "is prefetched to the first (fast) tier")
    viewer_dir: Path = Field(Path("/opt/beamhub/viewer"),
                             description="the HDF5 viewer's bundle (viewer.js, viewer.css) scripts/install.sh builds")
    h5_keep_seconds: float = Field(2.0, ge=0, description="seconds an HDF5 file read through /h5 stays open for the "
                                                          "next requests (each still decides the caller's read "
                                                          "itself); 0: every request opens and closes it")

    node_cpus: float | None = None
    node_memory: str | None = None
    gpus: list[str] = []
    overcommit: bool = False
    runtime_dir: Path = Field(Path("/run/beamhub"), description="where each session gets a directory only its user "
                                                                "and beamhub may enter, for its program's socket")

    default_runtime: int = 86400
    max_runtime: int = 30 * 86400
    expiry_warning: list[int] = Field([900, 300], description="how long before its expiry a session's user is "
                                                              "warned, in seconds: once per lead time, e.g. "
                                                              "[900, 300] (one number, as before, is one lead time)")
    session_log_max: int = Field(10 * 2**20, ge=4096, description="bytes a session's log (its program's output, in "
                                                                  "~/.beamhub/sessions/) may take, its rotation "
                                                                  "included")
    start_timeout: int = 120
    stop_grace: float = 5.0
    reconcile_interval: float = 2.0
    heartbeat_interval: float = 30.0

    slurm_conf: Path | None = Field(None, description="the slurm.conf batch jobs are submitted with (SLURM_CONF); "
                                                      "None: Slurm's default, /etc/slurm/slurm.conf")
    slurm_partitions: list[str] = Field([], description="the partitions users may submit to; empty: every partition "
                                                        "sinfo shows up")
    slurm_partition: str | None = Field(None, description="with backend = \"slurm\": the partition sessions run in "
                                                          "unless they ask for one; None: Slurm's default")
    slurm_job_prefix: str = Field("beamhub-session-", description="the start of the Slurm job names of this beamhub's "
                                                                  "sessions (a job so named that no session owns is "
                                                                  "cancelled as an orphan)")
    job_poll_interval: float = Field(2.0, gt=0, description="seconds between asking Slurm for the state of active jobs")

    console_timezone: str = Field("UTC", description="IANA time zone the web console shows times in, e.g. "
                                                     "Asia/Shanghai")

    stream_bind: str | None = Field(
        None, pattern=r"^(tcp|ipc)://\S+$",
        description="the ZeroMQ endpoint the DAQ publishes live frames to, e.g. tcp://10.1.0.5:5560 (a ROUTER "
                    "socket beamhub binds; frames carry a data:ingest token). None: no live frames")
    stream_subscribe_bind: str | None = Field(
        None, pattern=r"^(tcp|ipc)://\S+$",
        description="the ZeroMQ endpoint Python subscribers (beamhub_stream.subscribe) read live frames from, e.g. "
                    "tcp://0.0.0.0:5561 (a ROUTER socket beamhub binds; a subscription carries the user's token). "
                    "None: subscribers use the websocket only")
    stream_queue_frames: int = Field(16, ge=1, le=100_000, description="frames queued for each subscriber of a live "
                                                                      "stream before its policy applies")
    stream_policy: Literal["drop", "block"] = Field(
        "drop", description="when a subscriber's queue is full: drop its oldest frame (it is told of the gap) or "
                            "block the publisher until every subscriber has room")
    stream_max_frame_bytes: int = Field(64 * 2**20, ge=1024, description="the largest frame the DAQ may publish; "
                                                                         "the relay holds at most subscribers x "
                                                                         "stream_queue_frames of them")

    @field_validator("expiry_warning", mode="before")
    @classmethod
    def _lead_times(cls, value: object) -> object:
        """One number (the setting's earlier form) is a list of one lead time."""
        return [value] if isinstance(value, int | str) else value

    @field_validator("storage_tiers")
    @classmethod
    def _tiers_are_folder_names(cls, value: list[str]) -> list[str]:
        """Each tier is one folder of storage_root; `current` holds the proposals' stable paths."""
        for tier in value:
            if tier in ("", ".", "..", "current") or "/" in tier or "\0" in tier:
                raise ValueError(f"{tier!r} cannot be a tier: a tier is a folder name under storage_root, and "
                                 "`current` holds the proposals' stable paths")
        return value

    @field_validator("tier_budget", mode="before")
    @classmethod
    def _budget_sizes(cls, value: object) -> object:
        """Budgets as sizes ("20T", "512Gi") or bytes."""
        return {tier: parse_size(size) for tier, size in value.items()} if isinstance(value, dict) else value

    @field_validator("bind")
    @classmethod
    def _bind_has_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("bind must be HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:8000")
        return value

    @field_validator("login_methods")
    @classmethod
    def _known_login_methods(cls, value: list[str]) -> list[str]:
        unknown = set(value) - {"password", "pam", "oidc"}
        if unknown:
            raise ValueError(f"unknown login_methods {sorted(unknown)}; known: oidc, pam, password")
        return value

    @model_validator(mode="after")
    def _oidc_is_complete(self) -> Settings:
        if "oidc" in self.login_methods and not (self.oidc_issuer and self.oidc_client_id):
            raise ValueError("login method oidc needs oidc_issuer and oidc_client_id")
        return self

    @model_validator(mode="after")
    def _relay_has_one_process(self) -> Settings:
        if self.workers > 1 and (self.stream_bind or self.stream_subscribe_bind):
            raise ValueError("the live-frame relay runs in one process: with stream_bind or stream_subscribe_bind "
                             "set, workers must be 1")
        return self

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> Settings:
        for low, high in (("uid_min", "uid_max"), ("gid_min", "gid_max"),
                          ("idmap_range_low", "idmap_range_high"), ("idmap_default_low", "idmap_default_high")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) is above {high} ({getattr(self, high)})")
        if self.idmap_default_low <= self.idmap_range_high and self.idmap_range_low <= self.idmap_default_high:
            raise ValueError(f"idmap_default_low-high ({self.idmap_default_low}-{self.idmap_default_high}) overlaps "
                             f"idmap_range_low-high ({self.idmap_range_low}-{self.idmap_range_high})")
        if self.windows_domain_sid is not None:
            for low, high in (("uid_min", "uid_max"), ("gid_min", "gid_max")):
                if getattr(self, low) < self.idmap_range_low or getattr(self, high) > self.idmap_range_high:
                    raise ValueError(f"{low}-{high} ({getattr(self, low)}-{getattr(self, high)}) must lie inside "
                                     f"idmap_range_low-high ({self.idmap_range_low}-{self.idmap_range_high})")
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
    def session_url_pattern(self) -> str:
        return self.session_url or f"http://{{session}}.sessions.localhost:{self.port}"

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
