"""A site adds a backend or a session kind by installing a package with entry points: beamhub finds it, unedited."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from beamhub.compute.registry import backend_names, make_backend
from beamhub.config import ConfigError, Settings
from beamhub.errors import Invalid
from beamhub.sessions import kinds

SITE_PACKAGE = textwrap.dedent('''
    """A site's own backend and session kind, as a third party would ship them."""
    from beamhub.sessions.kinds import KindProgram

    class ToyBackend:
        name = "toy"
        remote = False

        def __init__(self, settings):
            self.settings = settings

    def toy_kind(image, session_id, socket, token, command, args):
        return KindProgram(argv=[str(image / "bin" / "toy-server"), "--socket", str(socket)], ready_path="/ready")
''')

ENTRY_POINTS = textwrap.dedent("""
    [beamhub.backends]
    toy = toy_site:ToyBackend

    [beamhub.kinds]
    toy = toy_site:toy_kind
""")


@pytest.fixture
def installed_site_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """toy_site and its dist-info (METADATA, entry_points.txt) on sys.path, as pip would install them."""
    (tmp_path / "toy_site.py").write_text(SITE_PACKAGE)
    info = tmp_path / "toy_site-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-site\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_beamhubs_own_backends_and_kinds_are_entry_points_too() -> None:
    assert {"local", "slurm"} <= set(backend_names())
    assert {"jupyter", "command"} <= set(kinds.kind_names())


def test_a_backend_of_an_installed_package_is_found_by_its_name(installed_site_package: None, tmp_path: Path) -> None:
    backend = make_backend(Settings(backend="toy", state_dir=tmp_path / "state"))
    assert type(backend).__name__ == "ToyBackend" and backend.settings.backend == "toy"
    assert "toy" in backend_names()


def test_a_session_kind_of_an_installed_package_builds_its_program(installed_site_package: None) -> None:
    program = kinds.program_for("toy", Path("/opt/images/x"), "s1", Path("/run/beamhub/s1/http.sock"), "t", None, [])
    assert program.argv == ["/opt/images/x/bin/toy-server", "--socket", "/run/beamhub/s1/http.sock"]
    assert "toy" in kinds.kind_names()


def test_an_unknown_backend_or_kind_names_what_is_installed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown backend 'nowhere'; installed: .*local"):
        make_backend(Settings(backend="nowhere", state_dir=tmp_path / "state"))
    with pytest.raises(Invalid, match="unknown session kind 'nothing'; known: .*jupyter"):
        kinds.program_for("nothing", Path("/"), "s1", Path("/s"), "t", None, [])
