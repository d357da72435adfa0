"""Text a service stored in English with values inside (a session's reason, an event) is shown in the page's
language: the template that made it is found and its translation filled with the same values."""

from __future__ import annotations

import signal

from beamhub.sessions.reasons import exit_reason
from beamhub.web.stored_text import translated


def test_every_reason_a_program_can_end_with_is_shown_in_chinese() -> None:
    for status in (None, 0, 1, 2, 3, 125, 126, 127, -signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGSEGV,
                   -signal.SIGABRT, -signal.SIGHUP, -99):
        english = exit_reason(status)
        chinese = translated(english, "zh_CN")
        assert chinese != english and ("程序" in chinese or "会话" in chinese), (status, chinese)
    assert translated(exit_reason(3), "zh_CN") == "程序出错停止（退出状态3）；日志中有它的输出"
    assert translated(exit_reason(-signal.SIGHUP), "zh_CN") == "程序已结束：它被 SIGHUP 终止"


def test_a_refusal_inside_a_refusal_is_translated_too() -> None:
    assert translated("key 2 of 3: give one key per line", "zh_CN") == "第2个密钥（共3个）：请每行提供一个密钥"


def test_a_jobs_events_are_translated_and_slurms_reason_code_kept() -> None:
    assert translated("submitted as Slurm job 42", "zh_CN") == "已作为 Slurm 作业 42 提交"
    assert translated("waiting (Priority)", "zh_CN") == "等待中 (Priority)"
    assert translated("failed with exit code 2 (NonZeroExitCode)", "zh_CN") == "失败，退出码2 (NonZeroExitCode)"
    assert translated("completed (exit code 0)", "zh_CN") == "已完成（退出码0）"
    queued = "queued as Slurm job 7: waiting behind jobs of higher priority (Priority)"  # a session on Slurm
    assert translated(queued, "zh_CN") == "已作为 Slurm 作业 7 排队：正在等待优先级更高的作业 (Priority)"


def test_text_no_template_made_is_shown_as_it_is() -> None:
    assert translated("the cluster is on fire", "zh_CN") == "the cluster is on fire"
    assert translated("the program finished successfully", "en") == "the program finished successfully"
    assert translated(None, "zh_CN") == ""
