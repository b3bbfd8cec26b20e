"""Keep freed CPU memory in the process heap instead of returning it to the OS (glibc ``mallopt``).

A meta-training step allocates and frees the same few hundred MB of activations every time (the query set's
full-resolution feature maps and their gradients). glibc serves each such block with a fresh ``mmap`` and returns it
with ``munmap``, so every step pays again for page faults and for the kernel zeroing those pages. On the 2-core CPU
this was about a third of an AM meta-step (``bench/meta_step.py --heap system`` against the default). With mmap off
and a high trim threshold the blocks stay in the heap and are reused from the second step on.

The price is resident memory: the heap keeps its high-water mark (and some fragmentation) until the process ends.
It is a process-wide setting, meant for the training and benchmark entry points, never called on import.
"""

from __future__ import annotations

import ctypes

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def retain_freed_memory() -> bool:
    """Make this process keep freed memory for reuse (no mmap for large blocks, trim only above 2 GiB free).

    Returns True when the C library accepted both settings (glibc), False where it has no ``mallopt`` or refused
    (musl, macOS, Windows): nothing changes there.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1
