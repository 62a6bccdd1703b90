"""The memory allocator of the processes that fine-tune (``adapt.runner.allocator``).

A fine-tuning step on the host allocates and frees a few dozen activation and gradient buffers of
50-500 kB, and glibc's malloc and free take a noticeable share of a step's CPU, more when two
worker processes run side by side. TCMalloc (Debian ``libtcmalloc-minimal4``) keeps freed buffers
in per-size caches instead, and the adapt stage's workers run measurably faster on it (the
profile and the stage's timings on both allocators: ``benchmarks/README.md``, "The memory
allocator").

PyTorch's CPU performance guide suggests the same (jemalloc or TCMalloc, preloaded). The weights
are identical: an allocator decides where a buffer lives, not what is computed in it.

A library can only replace malloc when it is loaded before the process starts (``LD_PRELOAD``), so
this applies to the worker processes a stage starts (the local Dask cluster), not to the stage's
own process (the ``threads`` runner).
"""

from __future__ import annotations

import ctypes.util
from functools import cache
from pathlib import Path

ALLOCATORS = ("auto", "tcmalloc", "system")
TCMALLOC = "tcmalloc_minimal"  # the allocator alone, without the heap profiler
DEBIAN_PACKAGE = "libtcmalloc-minimal4"


def find_tcmalloc() -> str | None:
    """TCMalloc's shared library as the dynamic loader finds it (e.g. ``libtcmalloc_minimal.so.4``), or None."""
    return ctypes.util.find_library(TCMALLOC)


def missing_tcmalloc() -> str:
    """What to do when TCMalloc is asked for and not installed."""
    return f"lib{TCMALLOC} is not installed (Debian/Ubuntu: apt install {DEBIAN_PACKAGE})"


def worker_preload(choice: str) -> str | None:
    """The library worker processes preload for ``adapt.runner.allocator=choice``; None: the system's.

    ``auto`` takes TCMalloc when it is installed; ``tcmalloc`` insists on it (params validation
    has already said so when it is missing); ``system`` keeps the C library's malloc.
    """
    if choice not in ALLOCATORS:
        raise ValueError(f"adapt.runner.allocator={choice!r} is not supported; use one of {list(ALLOCATORS)}")
    if choice == "system":
        return None
    library = find_tcmalloc()
    if library is None and choice == "tcmalloc":
        raise ValueError(f"adapt.runner.allocator='tcmalloc' but {missing_tcmalloc()}; or use 'auto' or 'system'")
    return library


@cache  # a process's allocator is fixed when it starts
def process_allocator() -> str:
    """``tcmalloc`` when TCMalloc is mapped into this process, else ``system`` (from ``/proc/self/maps``)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "tcmalloc" if f"lib{TCMALLOC}" in maps else "system"
