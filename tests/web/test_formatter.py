"""How the console writes an end time: the time of day today, the day in front of it on another day."""

from __future__ import annotations

import datetime as dt

import pytest

from beamhub.web.i18n import Formatter


@pytest.mark.parametrize(("locale", "other_day"), [("en", "Dec 1 16:30"), ("zh_CN", "12月1日 16:30")])
def test_an_end_time_reads_as_a_clock(locale: str, other_day: str) -> None:
    formatter = Formatter(locale, "UTC")
    now = dt.datetime.now(dt.UTC).replace(hour=16, minute=30, second=0, microsecond=0)
    assert formatter.clock(now) == "16:30"
    assert formatter.clock(dt.datetime(2020, 12, 1, 16, 30, tzinfo=dt.UTC)) == other_day
    assert formatter.clock(None) == ""
