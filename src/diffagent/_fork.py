"""Work shared among processes forked from this one.

A forked worker starts as a copy of this process, so a large index, or a function that closes over one, is
there without being pickled or loaded again: that is what makes sharing a batch worth it on a few cores.
Only what goes in and comes out of each call is pickled. Where the system cannot fork (Windows), or for one
worker, the work is done here, with the same results.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .errors import DiffAgentError, UserInputError

__all__ = [
    "MAX_AUTO_WORKERS", "ForkedWorkers", "WorkerDied", "can_fork", "forked_map", "usable_cores",
    "worker_count",
]  # fmt: skip

MAX_AUTO_WORKERS = 4
"""``workers=0`` means one per core, this many at most (each worker copies the pages it writes to)."""

_function: Callable[[Any], Any] | None = None
"""In a worker: what it calls."""


class WorkerDied(DiffAgentError):
    """A worker process ended without answering: killed, most likely for memory."""


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_count(workers: int) -> int:
    """``workers`` itself, or for 0 the cores this process may use (at most :data:`MAX_AUTO_WORKERS`)."""
    if workers < 0:
        raise UserInputError("workers must be 0 (one per core) or more")
    if workers:
        return workers
    return max(1, min(usable_cores(), MAX_AUTO_WORKERS))


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


class ForkedWorkers:
    """``workers`` processes forked now, each running ``start()`` once and then ``function(item)`` for the
    items it is given. They stop on :meth:`close`, when this object is collected, or when the process ends.
    A worker that dies (the system's out-of-memory killer) fails the call with :class:`WorkerDied` rather
    than leaving it waiting for an answer that will not come."""

    def __init__(
        self, function: Callable[[Any], Any], workers: int, start: Callable[[], None] | None = None
    ) -> None:
        # a copy of this process, not a fresh interpreter; under fork the initializer's arguments are
        # inherited, not pickled, so ``function`` may close over anything
        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("fork"), initializer=_begin,
            initargs=(function, start),
        )  # fmt: skip
        # the workers' garbage collections leave this process's objects alone, so that the pages those
        # live on stay shared rather than copied into each worker
        gc.freeze()
        try:
            self._pool.submit(int).result()  # under fork, every worker starts at the first task
        finally:
            gc.unfreeze()
        self.pids = sorted(self._pool._processes)
        self._stop = weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)

    def map(self, items: Iterable[Any]) -> Iterator[Any]:
        """``function(item)`` for each item, in the items' order, as the results come in."""
        try:
            yield from self._pool.map(_call, items)
        except BrokenProcessPool:
            raise WorkerDied(
                "a worker process died (out of memory?); try fewer workers (--workers 1)"
            ) from None

    def close(self) -> None:
        self._stop.detach()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _begin(function: Callable[[Any], Any], start: Callable[[], None] | None) -> None:
    global _function
    if start is not None:
        start()
    _function = function


def _call(item: Any) -> Any:
    if _function is None:
        raise RuntimeError("not a diffagent worker process")
    return _function(item)


def forked_map(function: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
    """``function(item)`` for each item, in order, shared among ``workers`` forked processes for the
    duration of the loop (here, when one worker or no fork)."""
    if workers <= 1 or not can_fork():
        yield from map(function, items)
        return
    pool = ForkedWorkers(function, workers)
    try:
        yield from pool.map(items)
    finally:
        pool.close()
