"""squeue's listing as beamhub reads it: a job's name is its user's to choose, and must never make a line of
another job (the reconciler cancels jobs it takes for orphans of its sessions; the poller records states)."""

from __future__ import annotations

from beamhub.compute.slurm_cli import listed_jobs


def line(name: str, job_id: str, state: str = "RUNNING", code: str = "0") -> str:
    return f"{name}|{job_id}|{state}|None|node1|1:00:00|{code}|1700000000|1700000100|"


def test_a_plain_listing_is_read_whole() -> None:
    jobs = listed_jobs(line("beamhub-s1", "101") + "\n" + line("analysis", "102", "FAILED", "768") + "\n")
    assert [(j.slurm_id, j.name, j.state) for j in jobs] == [(101, "beamhub-s1", "RUNNING"),
                                                            (102, "analysis", "FAILED")]
    assert jobs[1].exit_code == 3 and jobs[0].time_limit == 60


def test_a_name_with_a_newline_or_separators_makes_no_line_of_another_job() -> None:
    forged = "x\n" + line("beamhub-gone", "202", "RUNNING").rstrip("|")
    jobs = listed_jobs(line(forged, "101") + "\n" + line("y|202|RUNNING", "103") + "\n")
    assert 202 not in {job.slurm_id for job in jobs}
    own = "x\nbeamhub-gone"  # the most a name can do: rename its own job's line
    assert [(j.slurm_id, j.name) for j in listed_jobs(line(own, "101"))] == [(101, "beamhub-gone")]


def test_array_and_heterogeneous_jobs_are_passed_over() -> None:
    jobs = listed_jobs("\n".join([line("a", "123_4"), line("h", "124+0"), line("b", "125")]))
    assert [job.slurm_id for job in jobs] == [125]
