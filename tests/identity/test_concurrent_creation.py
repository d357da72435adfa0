"""Twenty users created at once on a fresh database all get an account (they race to create the all-users group
and to pick a UID), and a host that refuses useradd leaves no user behind and answers 500 with the reason logged."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

from tests.conftest import remove_accounts, unique_name


def test_twenty_first_users_created_at_once_all_succeed(beamhub_factory: Any, uid_range_env: dict[str, str],
                                                        tmp_path: Path) -> None:
    group = unique_name("all")
    hub = beamhub_factory(env={**uid_range_env, "BEAMHUB_ALL_USERS_GROUP": group})
    names = [unique_name("c") for _ in range(20)]
    statuses: list[int] = []
    start = threading.Barrier(20, timeout=30)

    def create(name: str) -> None:
        start.wait()
        statuses.append(hub.admin.post("/api/v1/users", json={"username": name}).status_code)

    threads = [threading.Thread(target=create, args=(name,)) for name in names]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [201] * 20, hub.log()
        uids = {int(subprocess.run(["id", "-u", name], capture_output=True, text=True).stdout) for name in names}
        assert len(uids) == 20
        members = subprocess.run(["getent", "group", group], capture_output=True, text=True).stdout
        assert set(members.strip().rsplit(":", 1)[1].split(",")) == set(names)
    finally:
        remove_accounts(names)
        subprocess.run(["groupdel", group], capture_output=True)


def test_a_refused_useradd_is_a_500_and_leaves_no_user(beamhub_factory: Any, uid_range_env: dict[str, str],
                                                       tmp_path: Path) -> None:
    home_root = tmp_path / "homes-cannot-be-made"
    home_root.write_text("a file where the homes' folder should be")
    hub = beamhub_factory(env={**uid_range_env, "BEAMHUB_HOME_ROOT": str(home_root)})
    name = unique_name("r")
    try:
        answer = hub.admin.post("/api/v1/users", json={"username": name})
        assert answer.status_code == 500
        assert "log" in answer.json()["detail"]
        assert "useradd" in hub.log()
        assert hub.admin.get(f"/api/v1/users/{name}").status_code == 404
        assert subprocess.run(["id", name], capture_output=True).returncode != 0
    finally:
        remove_accounts([name])
