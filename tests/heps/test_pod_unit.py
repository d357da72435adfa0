"""A pod and the SSH keys sent with it are one unit: a session that cannot be created keeps no key, and keys that
cannot be stored stop the session again (the order of create_pod, with stand-ins for the two services)."""

from __future__ import annotations

from typing import Any

import pytest

from beamhub.errors import Conflict
from beamhub.heps.service import create_pod
from beamhub.identity.principal import SYSTEM


class Recorder:
    """Stands in for SessionService and SshKeyService: records each call, raises where told."""

    def __init__(self, fail: str = "") -> None:
        self.calls: list[str] = []
        self.fail = fail

    def _call(self, name: str, result: Any = None) -> Any:
        self.calls.append(name)
        if name == self.fail:
            raise Conflict(f"{name} refused")
        return result

    def validate(self, *_: Any) -> list[str]:
        return self._call("validate", ["key"])

    def create(self, *_: Any) -> Any:
        return self._call("create", type("Record", (), {"id": "s1"})())

    def store(self, *_: Any, **__: Any) -> None:
        self._call("store")

    def stop(self, *_: Any, **__: Any) -> None:
        self._call("stop")


@pytest.mark.parametrize(("fail", "calls"), [
    ("", ["validate", "create", "store"]),
    ("validate", ["validate"]),
    ("create", ["validate", "create"]),
    ("store", ["validate", "create", "store", "stop"]),
])
def test_keys_are_stored_only_with_a_session_and_a_session_only_with_its_keys(fail: str, calls: list[str]) -> None:
    both = Recorder(fail)
    if fail:
        with pytest.raises(Conflict, match=f"{fail} refused"):
            create_pod(both, both, SYSTEM, "alice", None, "ssh-ed25519 AAAA")  # type: ignore[arg-type]
    else:
        assert create_pod(both, both, SYSTEM, "alice", None, "ssh-ed25519 AAAA").id == "s1"  # type: ignore[arg-type]
    assert both.calls == calls
