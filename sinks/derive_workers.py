"""Worker processes that derive a batch's extracted columns while the sink reads on.

Decoding each payload (Avro) and mapping it to the reader-facing columns is most of the
sink's Python work per event (profiled: ~85 % of the consume loop's CPU, see
docs/benchmarks.md), and it holds the GIL, so a thread cannot take it off the loop. Worker
processes can: the writer hands each sealed batch's ``(kinds, payloads)`` to
:meth:`DeriveWorkers.submit` and inserts once the :class:`pyarrow.RecordBatch` comes back.

What runs there is :func:`sinks.rows.derive_extracted`, i.e. :func:`sinks.rows.extracted_columns`
per event: the very derivation ``verify`` re-runs, so the stored columns stay provable. It
is deterministic, so a batch derived twice (a retry after a failed insert, a worker lost)
yields the same columns and the same deduplication token covers it.

Without workers (``WriterConfig.derive_workers=0``, the writer's default, which tests and
tools that embed a writer use) the writer's insert thread derives instead. Workers are
started with ``spawn`` (the sink
process holds librdkafka and engine threads, which ``fork`` would copy mid-flight), ignore
SIGINT/SIGTERM (the sink shuts them down after its final flush), and exit within a second
of the sink process dying (kill -9 included). A pool that broke (a worker killed) is replaced on
the next submit; the batch it held fails as an insert failure and is retried unchanged.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from sinks.errors import InsertFailed, SinkError
from sinks.rows import derive_extracted

__all__ = ["DeriveWorkers"]

_PARENT_CHECK_S = 0.5


def _follow_parent(parent: int) -> None:
    """Exit once the sink is gone. A worker holds its own end of the task pipe's writer too,
    so it would never see EOF there and outlive a sink killed with -9 (measured)."""
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_S)
    os._exit(0)


def _init_worker(parent: int) -> None:
    """Worker initializer: leave SIGINT/SIGTERM to the sink, which stops the pool itself,
    and exit when the sink process dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_follow_parent, args=(parent,), name="follow-sink", daemon=True).start()


def _warm() -> None:
    """Import and build the codec once, so the first batch does not pay for it."""
    derive_extracted([], [])


class DeriveWorkers:
    """``workers`` processes running :func:`~sinks.rows.derive_extracted`, started at once."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise SinkError(f"derive workers must be 1 or more, got {workers}")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._start()

    def _start(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(os.getpid(),))
        for _ in range(self.workers):
            pool.submit(_warm)
        self._pool = pool
        return pool

    def submit(self, kinds: Sequence[str], payloads: Sequence[bytes]) -> Future[Any]:
        """Derive the extracted columns of one batch; the future holds a ``RecordBatch``
        (read it with :meth:`result`)."""
        pool = self._pool or self._start()
        try:
            return pool.submit(derive_extracted, list(kinds), list(payloads))
        except BrokenProcessPool:
            pool.shutdown(wait=False, cancel_futures=True)
            return self._start().submit(derive_extracted, list(kinds), list(payloads))

    @staticmethod
    def result(future: Future[Any]) -> Any:
        """The ``RecordBatch`` of a :meth:`submit`; a lost worker becomes :class:`InsertFailed`."""
        try:
            return future.result()
        except (BrokenProcessPool, CancelledError) as exc:
            raise InsertFailed(
                f"a derive worker process died while deriving a batch ({exc}); "
                "the batch is kept and derived again on the retry", retry_after=0.5,
            ) from exc

    def close(self) -> None:
        """Stop the worker processes (waits for batches they hold)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
