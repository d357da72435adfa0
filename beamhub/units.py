"""Sizes as people and Kubernetes write them ("200G", "512Mi", "1.5Gi")."""

from __future__ import annotations

import re

_FACTORS = {
    "": 1,
    "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKMGTP]i?)?[bB]?\s*$")


def parse_size(text: str | int) -> int:
    """Bytes in a size; decimal suffixes (G) and binary ones (Gi) as Kubernetes reads them."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a size cannot be negative")
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (examples: 200G, 512Mi, 1073741824)")
    number, suffix = match.groups()
    return int(float(number) * _FACTORS[suffix or ""])


def format_size(num_bytes: int) -> str:
    """The shortest exact form with a binary or decimal suffix, else bytes."""
    for suffix in ("Pi", "Ti", "Gi", "Mi", "Ki", "P", "T", "G", "M", "k"):
        factor = _FACTORS[suffix]
        if num_bytes >= factor and num_bytes % factor == 0:
            return f"{num_bytes // factor}{suffix}"
    return str(num_bytes)
