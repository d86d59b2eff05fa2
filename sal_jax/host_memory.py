"""Host allocator settings that keep XLA-on-CPU steps from page-faulting.

XLA on CPU allocates a step's large temporaries (activations, convolution workspaces of tens of MB) with
`malloc` and frees them at the end of the step. glibc serves allocations above its mmap threshold
(at most 32 MB by default) with fresh `mmap`s and returns freed heap tops to the OS, so every step
faults in and zeroes those pages again. Measured here (benchmarks/, BENCHMARKS.md): a small CNN's train
step 38 -> 22 ms and a 2-layer GRU's 36 -> 26 ms, with ~10x fewer page faults; an MLP's is unchanged.
Freed memory stays in the process for reuse instead, so its resident size is the high-water mark.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt(3) parameter numbers (malloc.h) and the values used: the largest an int can say.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_LARGEST = 2**31 - 1
# The same settings as environment variables, read by glibc at start-up; if the user set one, we leave it.
ENV_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def keep_freed_host_memory() -> bool:
    """Serve large allocations from the heap and never trim it (glibc `mallopt`), for this process.

    Call once, early (the CLI and the benchmarks do). Returns True if the settings were applied; False,
    and changes nothing, where the C library is not glibc or the user chose their own via `ENV_VARS`.
    Results are unaffected: only where memory comes from changes.
    """
    if any(name in os.environ for name in ENV_VARS):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # no glibc (macOS, musl): nothing to tune
        return False
    # Trim first: while the mmap threshold is being raised, nothing should be handed back.
    return bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST)) and bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST))
