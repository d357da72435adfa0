"""Settings: a TOML file, BEAMHUB_* environment overrides that win, and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from beamhub.config import CONFIG_ENV, ConfigError, Settings, load_settings

BEAMHUB = Path(sys.executable).parent / "beamhub"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No BEAMHUB_* variable of the calling shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("BEAMHUB_"):
            monkeypatch.delenv(name)
    return monkeypatch


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_are_embedded() -> None:
    settings = load_settings()
    assert settings.bind == "127.0.0.1:8000"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.backend == "local"
    assert settings.database_url is None
    assert settings.callback_url == "http://127.0.0.1:8000"


def test_default_database_is_sqlite_in_the_state_dir(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BEAMHUB_STATE_DIR", str(tmp_path))
    assert load_settings().sqlalchemy_url == f"sqlite:///{tmp_path / 'beamhub.db'}"


def test_a_toml_file_given_as_argument_is_read(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "beamhub.toml", f'''
state_dir = "{tmp_path}"
bind = "0.0.0.0:9000"
uid_min = 30000
uid_max = 39999
gpus = ["0", "1"]
[images]
default = "/opt/images/default"
"dockerhub.ihep.ac.cn/opendata/cumopy:db61750" = "/opt/images/cumopy"
''')
    settings = load_settings(config)
    assert settings.state_dir == tmp_path
    assert settings.port == 9000
    assert settings.uid_min == 30000
    assert settings.gpus == ["0", "1"]
    assert settings.images["dockerhub.ihep.ac.cn/opendata/cumopy:db61750"] == Path("/opt/images/cumopy")


def test_a_toml_file_named_by_beamhub_config_is_read(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(CONFIG_ENV, str(write_toml(tmp_path / "b.toml", 'bind = "127.0.0.1:8123"\n')))
    assert load_settings().port == 8123
    assert Settings().port == 8123


def test_environment_wins_over_the_file(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    config = write_toml(tmp_path / "b.toml",
                        'bind = "127.0.0.1:8123"\nuid_min = 30000\nuid_max = 49999\nnode_memory = "8G"\n')
    clean_env.setenv("BEAMHUB_BIND", "127.0.0.1:8999")
    clean_env.setenv("BEAMHUB_UID_MIN", "40000")
    clean_env.setenv("BEAMHUB_IMAGES", '{"default": "/srv/img"}')
    settings = load_settings(config)
    assert settings.port == 8999
    assert (settings.uid_min, settings.uid_max) == (40000, 49999)
    assert settings.images == {"default": Path("/srv/img")}
    assert settings.node_memory == "8G"


def test_loading_a_file_leaves_the_environment_alone(tmp_path: Path) -> None:
    load_settings(write_toml(tmp_path / "b.toml", 'bind = "127.0.0.1:8123"\n'))
    assert CONFIG_ENV not in os.environ
    assert load_settings().port == 8000


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_a_missing_file_named_by_beamhub_config_is_a_config_error(tmp_path: Path,
                                                                   clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(CONFIG_ENV, str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=f"{CONFIG_ENV}=.*missing.toml does not exist"):
        load_settings()


def test_a_file_that_is_not_toml_is_a_config_error_naming_it(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "broken.toml", "bind = \n[[[\n")
    with pytest.raises(ConfigError, match="broken.toml is not valid TOML"):
        load_settings(config)


def test_an_unknown_key_in_the_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no_such_setting"):
        load_settings(write_toml(tmp_path / "b.toml", "no_such_setting = 1\n"))


@pytest.mark.parametrize("bind", ["8000", "localhost", ":8000", "127.0.0.1:", "127.0.0.1:http",
                                  "127.0.0.1:0", "127.0.0.1:70000"])
def test_a_bad_bind_is_a_config_error(bind: str, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BEAMHUB_BIND", bind)
    with pytest.raises(ConfigError, match="bind must be HOST:PORT"):
        load_settings()


def test_a_badly_typed_environment_value_is_a_config_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BEAMHUB_NODE_CPUS", "many")
    with pytest.raises(ConfigError, match="node_cpus"):
        load_settings()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BEAMHUB_")}
    return subprocess.run([str(BEAMHUB), *args], capture_output=True, text=True, timeout=60,
                          env={**clean, "COLUMNS": "200", **(env or {})})


def test_serve_with_a_missing_config_exits_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    result = run_cli("serve", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode != 0
    assert "missing.toml does not exist" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_serve_with_a_bad_bind_exits_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    result = run_cli("serve", env={"BEAMHUB_BIND": "nowhere", "BEAMHUB_STATE_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "bind must be HOST:PORT" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_uid_range_upside_down_is_a_config_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BEAMHUB_UID_MIN", "40000")
    with pytest.raises(ConfigError, match=r"uid_min \(40000\) is above uid_max \(29999\)"):
        load_settings()
