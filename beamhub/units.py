"""Sizes as people and Kubernetes write them ("200G", "512Mi", "1.5Gi")."""

from __future__ import annotations

import re
from fractions import Fraction

_FACTORS = {
    "": 1,
    "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|Pi|[kKMGTP])?[bB]?\s*$")


def parse_size(text: str | int) -> int:
    """Bytes in a size; decimal suffixes (G) and binary ones (Gi) as Kubernetes reads them."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a size (examples: 200G, 512Mi, 1073741824)")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a size cannot be negative")
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (examples: 200G, 512Mi, 1073741824)")
    number, suffix = match.groups()
    return int(Fraction(number) * _FACTORS[suffix or ""])


def format_size(num_bytes: int) -> str:
    """The shortest exact form with a binary or decimal suffix (binary on a tie), else bytes."""
    forms = [f"{num_bytes // _FACTORS[suffix]}{suffix}"
             for suffix in ("Pi", "Ti", "Gi", "Mi", "Ki", "P", "T", "G", "M", "k")
             if num_bytes >= _FACTORS[suffix] and num_bytes % _FACTORS[suffix] == 0]
    return min(forms, key=len, default=str(num_bytes))
