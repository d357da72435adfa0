"""cgroup detection and limits on fake cgroup trees (plain files), so both v1 and v2 paths run anywhere."""

from __future__ import annotations

from pathlib import Path

from beamhub.compute import cgroups
from beamhub.compute.cgroups import CgroupV1, CgroupV2

MiB = 1 << 20


def fake_v2(root: Path, controllers: str = "cpuset cpu io memory hugetlb pids") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


def fake_v1(root: Path) -> Path:
    for controller, limit in (("memory", "memory.limit_in_bytes"), ("cpu", "cpu.cfs_quota_us")):
        (root / controller).mkdir(parents=True)
        (root / controller / limit).write_text("-1\n")
    return root


def test_detect_pure_v2_with_cpu_and_memory(tmp_path: Path) -> None:
    found = cgroups.detect(fake_v2(tmp_path))
    assert isinstance(found, CgroupV2)
    assert found.parent == tmp_path / cgroups.PARENT
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory"
    assert (tmp_path / cgroups.PARENT / "cgroup.subtree_control").read_text() == "+cpu +memory"


def test_detect_hybrid_uses_v1_when_unified_has_no_controllers(tmp_path: Path) -> None:
    fake_v2(fake_v1(tmp_path) / "unified", controllers="")
    found = cgroups.detect(tmp_path)
    assert isinstance(found, CgroupV1)
    assert (tmp_path / "memory" / cgroups.PARENT).is_dir()
    assert (tmp_path / "cpu" / cgroups.PARENT).is_dir()


def test_detect_hybrid_prefers_unified_with_controllers(tmp_path: Path) -> None:
    fake_v2(fake_v1(tmp_path) / "unified")
    found = cgroups.detect(tmp_path)
    assert isinstance(found, CgroupV2)
    assert found.parent == tmp_path / "unified" / cgroups.PARENT


def test_detect_v2_without_memory_controller_is_not_used(tmp_path: Path) -> None:
    assert cgroups.detect(fake_v2(tmp_path, controllers="cpu pids")) is None


def test_detect_nothing_usable(tmp_path: Path) -> None:
    assert cgroups.detect(tmp_path) is None


def test_v2_create_writes_memory_swap_and_cpu_limits(tmp_path: Path) -> None:
    v2 = cgroups.detect(fake_v2(tmp_path))
    assert v2 is not None
    (v2_group := tmp_path / cgroups.PARENT / "s1").mkdir(parents=True)
    (v2_group / "memory.swap.max").write_text("max\n")

    dirs = v2.create("s1", 1.5, 100 * MiB)

    assert dirs == [v2_group]
    assert (v2_group / "memory.max").read_text() == str(100 * MiB)
    assert (v2_group / "memory.swap.max").read_text() == "0"
    assert (v2_group / "cpu.max").read_text() == "150000 100000"


def test_v2_oom_kills_counts_memory_events(tmp_path: Path) -> None:
    v2 = cgroups.detect(fake_v2(tmp_path))
    assert v2 is not None
    dirs = v2.create("s1", 1, 100 * MiB)
    assert v2.oom_kills(dirs) == 0
    (dirs[0] / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n")
    assert v2.oom_kills(dirs) == 2


def test_v1_create_writes_memory_and_cpu_quota(tmp_path: Path) -> None:
    v1 = cgroups.detect(fake_v1(tmp_path))
    assert v1 is not None
    memsw = tmp_path / "memory" / cgroups.PARENT / "s1" / "memory.memsw.limit_in_bytes"
    memsw.parent.mkdir(parents=True)
    memsw.write_text("-1\n")

    mem, cpu = v1.create("s1", 0.5, 100 * MiB)

    assert (mem / "memory.limit_in_bytes").read_text() == str(100 * MiB)
    assert memsw.read_text() == str(100 * MiB)
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"


def test_v1_oom_kills_reads_only_the_memory_group(tmp_path: Path) -> None:
    v1 = cgroups.detect(fake_v1(tmp_path))
    assert v1 is not None
    mem, cpu = v1.create("s1", 1, 100 * MiB)
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    (cpu / "memory.oom_control").write_text("oom_kill 5\n")
    assert v1.oom_kills([Path(str(mem)), Path(str(cpu))]) == 3


def test_kill_and_remove_is_idempotent_on_missing_groups(tmp_path: Path) -> None:
    group = tmp_path / "gone"
    group.mkdir()
    cgroups.kill_and_remove([group, tmp_path / "never-was"])
    cgroups.kill_and_remove([group])
    assert not group.exists()
