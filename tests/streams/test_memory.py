"""The relay's process keeps freed frames' memory for the next frames instead of faulting it in again."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CHURN = """
import ctypes, resource, sys
from beamhub.streams.sockets import keep_frame_memory
if sys.argv[1] == "kept":
    assert keep_frame_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
MiB = 2**20
def burst():
    frames = [libc.malloc(MiB) for _ in range(16)]
    for frame in frames:
        ctypes.memset(frame, 1, MiB)
    for frame in frames:
        libc.free(frame)
burst()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    burst()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    """Page faults of 20 bursts of 16 frames of 1 MiB, written and freed, after a first burst, in a fresh process."""
    done = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, timeout=60,
                          check=True)
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the memory is kept by telling glibc's malloc")
def test_frames_reuse_the_memory_of_earlier_frames_instead_of_faulting_it_in_again() -> None:
    pages = 20 * 16 * 2**20 // 4096
    if page_faults("default") < pages // 2:
        pytest.skip("this glibc keeps freed frames' memory by default: nothing to compare")
    assert page_faults("kept") < pages // 20  # 5% of what writing fresh memory every time costs
