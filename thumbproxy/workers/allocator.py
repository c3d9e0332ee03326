"""The C allocator of a render process: memory a render frees is kept for the next render, and given
back after a render that failed.

A render allocates and frees arrays of a few to tens of MiB. By default glibc maps each such
array afresh and gives freed memory at the top of its heap back to the kernel, so every render
faults the same memory in again: about 3000 page faults, 4% of a 4096 x 4096 render. Raised
thresholds keep it mapped; a render process then stays near the size of its largest render.
"""

import ctypes

# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Arrays below this come from the heap, whose freed memory is reused: glibc's largest allowed value.
MMAP_THRESHOLD_BYTES = 32 * 2**20
# Freed memory kept at the top of the heap before any goes back to the kernel: a few renders' worth.
TRIM_THRESHOLD_BYTES = 64 * 2**20


def keep_freed_memory() -> bool:
    """Set this process's glibc malloc to keep freed memory for reuse; False where the C library
    has no mallopt (musl, macOS) or refuses, and nothing changes."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # mallopt answers 1 on success.
    kept: bool = (
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    )
    return kept


def release_freed_memory() -> None:
    """Give the memory freed since the last call back to the kernel, as far as the C library can: after a
    render that failed half-way, what it held is not needed by the next one."""
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    malloc_trim.argtypes = (ctypes.c_size_t,)
    malloc_trim(0)
