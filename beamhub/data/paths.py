"""Paths that come from requests, confined to the storage root.

A request path is refused before it touches the file system when its text could escape: an
absolute path, a `..` component, a NUL, a backslash, or a percent-encoded dot, slash,
backslash or NUL that some layer forgot (or will later try) to decode. What remains is
resolved with every symlink followed; a result outside the root answers NotFound, exactly
as a missing file does, so probing learns nothing about what lies outside. A symlink whose
target stays inside the root is allowed: the caller decides access on the returned real
path, so the target's own ACL is the one that counts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from beamhub.errors import Invalid, NotFound

_ENCODED_SEPARATOR = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)


def check_relative(relative: str) -> list[str]:
    """The components of a request path; Invalid if its text could leave the directory it is joined to."""
    if "\x00" in relative or "\\" in relative:
        raise Invalid("path must not contain NUL or backslash")
    if _ENCODED_SEPARATOR.search(relative):
        raise Invalid("path must not contain percent-encoded dots, slashes, backslashes or NUL")
    if relative.startswith("/"):
        raise Invalid("path must be relative")
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Invalid("path must not contain '..'")
    return parts


def is_inside(root: Path, path: Path) -> bool:
    """Whether `path` is `root` or lies below it (both taken as given, no resolution)."""
    return path == root or root in path.parents


def resolve_inside(root: Path, relative: str) -> Path:
    """The real path of `relative` under `root`; Invalid if its text escapes, NotFound if missing or outside."""
    parts = check_relative(relative)
    real_root = Path(os.path.realpath(root, strict=True))
    try:
        real = Path(os.path.realpath(real_root.joinpath(*parts), strict=True))
    except (OSError, RuntimeError):
        raise NotFound("no such file: %(file)s", file=relative) from None
    if not is_inside(real_root, real):
        raise NotFound("no such file: %(file)s", file=relative)
    return real
