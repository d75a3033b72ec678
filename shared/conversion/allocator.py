"""Keeping freed memory for reuse while converting: megabyte-sized buffers come and go for every image.

A conversion allocates and frees a few buffers of a few MB per image (the file's bytes, each copy the HTTP
stack makes of a blob's body, the decoded image). With glibc's defaults most of them are mapped and unmapped
one by one, or returned to the OS when freed at the top of the heap, and every page of the next one is
faulted in again: on this project's 2-core machine, 3 to 4 ms of kernel time per 2.4 MB photo read from
blob storage, against under 1 ms once freed memory is kept (measured: ``make bench-intake``'s blob reads).
``keep_freed_memory`` raises the two glibc thresholds (mallopt(3): M_MMAP_THRESHOLD, M_TRIM_THRESHOLD) so
buffers up to 8 MB come from the heap and up to 16 MB of freed memory stays mapped. It costs at most that
much resident memory per process, and does nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# mallopt(3) parameter numbers (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 16 * 1024 * 1024

_done = False


def keep_freed_memory() -> bool:
    """Set the thresholds once per process; True when glibc took them."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
    if not ok:
        log.debug("mallopt refused the thresholds; the allocator keeps its defaults")
    _done = ok
    return ok
