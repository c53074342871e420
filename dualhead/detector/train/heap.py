"""Keep freed memory in the process heap during training (glibc), so a step's large temporaries
reuse warm pages instead of fresh ones.

A training step allocates and frees the same multi-megabyte tensors every iteration (activations,
their gradients, the DFL bins). glibc serves such blocks with mmap, or trims them off the top of
the heap when they are freed, so the next step page-faults every page again and zero-fills it in
the kernel: on 2 CPU cores that was ~4-5k page faults a step, and memory-bound ops such as the
gather backward's fill ran at a tenth of memset speed. Pinning glibc's mmap threshold (no
mmap below 32 MB: the largest the allocator accepts) and its trim threshold (1 GB) keeps those
pages mapped; the step then faults almost never. Tensors are still 64-byte aligned by
PyTorch's CPU allocator, so no arithmetic changes: results stay bitwise the same.
Intel's PyTorch CPU guide gets the same effect with jemalloc or tcmalloc through LD_PRELOAD;
mallopt needs no extra library and no re-exec. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 32 << 20  # glibc's largest accepted value (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1 << 30


@functools.cache
def retain_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process (and the data workers it forks
    afterwards). True when applied; False where mallopt is unavailable (not glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
