"""Worker processes for the CPU-bound stages (picture fingerprints, text normalisation).

Started by spawn, never fork: a child forked from a process whose other threads (OpenCV's pool,
a server's request threads) hold a lock inherits the held lock and can hang for ever; that is
how a CI run once stopped. Spawned children import the caller's main module, so a script that
calls assoc must do it under ``if __name__ == "__main__":`` (the `assoc` command does); when it
does not, the children die on start and `process_pool` says so instead of a bare traceback.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from .errors import AssocError


class WorkerError(AssocError):
    """Worker processes could not run."""


@contextmanager
def process_pool(workers: int, initializer: Callable[[], None] | None = None) -> Iterator[ProcessPoolExecutor]:
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=initializer) as pool:
            yield pool
    except BrokenProcessPool as exc:
        raise WorkerError("worker processes stopped before finishing. If assoc is called from a Python script, "
                          "put the call under `if __name__ == \"__main__\":` (assoc starts its workers with "
                          "multiprocessing's spawn, which imports the script again); otherwise the machine may "
                          f"be out of memory ({exc})") from exc
