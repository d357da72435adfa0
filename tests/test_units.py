"""Sizes as people and Kubernetes write them: parse_size and format_size."""

from __future__ import annotations

import pytest

from beamhub.units import format_size, parse_size


@pytest.mark.parametrize(("text", "expected"), [
    ("200G", 200 * 10**9),
    ("512Mi", 512 * 2**20),
    ("1.5Gi", 3 * 2**29),
    ("4k", 4000),
    ("4K", 4000),
    ("2Ti", 2 * 2**40),
    ("1P", 10**15),
    ("1073741824", 2**30),
    (" 8 G ", 8 * 10**9),
    ("16GB", 16 * 10**9),
    ("2.3M", 2_300_000),
])
def test_parse_size_reads_decimal_and_binary_suffixes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_takes_plain_integers_as_bytes() -> None:
    assert parse_size(0) == 0
    assert parse_size(123_456) == 123_456


def test_parse_size_is_exact_for_huge_numbers() -> None:
    assert parse_size("9" * 30 + "P") == int("9" * 30) * 10**15


@pytest.mark.parametrize("bad", ["lots", "", "G", "-5G", "1.5.2G", "5 apples", "5ki", "1e9", "0x10"])
def test_parse_size_rejects_what_is_not_a_size_and_names_it(bad: str) -> None:
    with pytest.raises(ValueError, match=r"is not a size \(examples: 200G"):
        parse_size(bad)


def test_parse_size_rejects_negative_integers() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_size(-1)


def test_parse_size_rejects_booleans() -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(True)


@pytest.mark.parametrize(("num_bytes", "expected"), [
    (0, "0"),
    (5, "5"),
    (1000, "1k"),
    (1024, "1Ki"),
    (200 * 10**9, "200G"),
    (2**30, "1Gi"),
    (3 * 2**29, "1536Mi"),
    (10**15, "1P"),
    (1_024_000, "1024k"),
])
def test_format_size_picks_the_shortest_exact_form(num_bytes: int, expected: str) -> None:
    assert format_size(num_bytes) == expected


@pytest.mark.parametrize("num_bytes", [0, 1, 999, 1000, 1023, 1024, 1_500_000, 3 * 2**29, 200 * 10**9,
                                       2**40 + 1, 7 * 10**12, 5 * 2**50, 123_456_789_012])
def test_format_size_round_trips_through_parse_size(num_bytes: int) -> None:
    assert parse_size(format_size(num_bytes)) == num_bytes


@pytest.mark.parametrize("text", ["200G", "512Mi", "1Gi", "64Mi", "3T", "1k"])
def test_a_formatted_size_reads_as_written(text: str) -> None:
    assert format_size(parse_size(text)) == text
