"""training.heap: freed blocks stay in the process (resident) instead of going back to the OS."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CHILD = """
import sys
import torch
from training.heap import retain_freed_memory

def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

ok = retain_freed_memory() if sys.argv[1] == "retain" else True
before = resident_mb()
x = torch.ones(64 * 2**20 // 4)  # 64 MB, over glibc's mmap threshold
held = resident_mb()
del x
after = resident_mb()
print(ok, held - before, held - after)
"""


@pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc",
                    reason="mallopt and /proc/self/statm are glibc/Linux facilities")
@pytest.mark.parametrize("mode", ["retain", "system"])
def test_freed_memory_is_kept_only_when_asked(mode: str) -> None:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True).stdout
    ok, grew, released = out.split()
    assert ok == "True"
    assert float(grew) > 60  # the tensor was resident
    if mode == "retain":
        assert float(released) < 8  # still resident after del: the heap kept it
    else:
        assert float(released) > 56  # munmap gave it back at once
