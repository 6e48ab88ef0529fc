"""Bookkeeping for records a Faust agent was never handed: when to look for them, and which
it handled itself.

Why: Faust's consumer (``Consumer.getmany``) discards the fetched records of a partition it
does not yet count active, and the rest of a batch on a consumer generation change, and
its commit can then pass the gap. An agent whose inputs must each end in a result (the
decide agent: :mod:`processors.input_gaps`; the review desk:
:mod:`processors.reviews.rebuilds`) therefore handles such records itself. A gap *followed*
by a handed record shows itself (the handed offset is past the one expected); a gap at the
*tail* of a partition does not, so each agent compares, on a timer, the next offset it
expects with the partition's stable end. Both agents keep the same two pieces of state,
here:

* :class:`StallWatch`: for how long a partition's expected offset has stood still, and
  which stable end was already found to hold nothing left to hand (transaction markers,
  aborted records), so that an idle partition costs one end read per ``stall_s``.
* :class:`HandledRun`: the offsets an agent handled itself that the consumer may still hand
  it later (it was only slow), so that the agent passes them by instead of handling them
  twice.

Pure: no Kafka, no clock of its own (the caller passes ``now``); one event loop drives it.
"""

from __future__ import annotations

__all__ = ["HandledRun", "StallWatch"]


class StallWatch:
    """Per partition: the expected offset last seen and since when; ends known to be quiet.

    ``expected`` may be ``None`` (nothing handed yet): that too is a value that can stand
    still, e.g. when the records at the resume position were dropped and no more arrive.
    """

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self._since: dict[int, tuple[int | None, float]] = {}
        self._quiet_end: dict[int, int] = {}

    def due(self, partition: int, expected: int | None, now: float) -> bool:
        """Whether ``expected`` has stood still on ``partition`` for ``stall_s`` (the first
        look at a value starts its wait; a moved value starts it again)."""
        seen = self._since.get(partition)
        if seen is None or seen[0] != expected:
            self._since[partition] = (expected, now)
            self._quiet_end.pop(partition, None)  # found quiet from another offset
            return False
        return now - seen[1] >= self.stall_s

    def restart(self, partition: int, expected: int | None, now: float) -> None:
        """Wait another ``stall_s`` before ``partition`` is due again."""
        self._since[partition] = (expected, now)

    def quiet(self, partition: int, end: int) -> bool:
        """Whether ``end`` was already found to hold nothing to hand after the expected offset."""
        return self._quiet_end.get(partition) == end

    def nothing_before(self, partition: int, end: int) -> None:
        """No record lies between the expected offset and ``end``: not read again until the end moves."""
        self._quiet_end[partition] = end

    def forget(self, partition: int) -> None:
        self._since.pop(partition, None)
        self._quiet_end.pop(partition, None)


class HandledRun:
    """Per partition, one run ``[first, end)`` of offsets the agent handled before it was handed them.

    Runs grow while they stay contiguous (:meth:`add` from where the last one ended); a run
    that starts elsewhere replaces the old one, which the consumer has passed by then.
    Offsets in a run that hold no record (markers) are never handed, so covering them is harmless.
    """

    def __init__(self) -> None:
        self._runs: dict[int, tuple[int, int]] = {}

    def add(self, partition: int, first: int, end: int) -> None:
        """``[first, end)`` was handled here."""
        run = self._runs.get(partition)
        self._runs[partition] = (run[0] if run is not None and run[1] == first else first, end)

    def covers(self, partition: int, offset: int) -> bool:
        run = self._runs.get(partition)
        return run is not None and run[0] <= offset < run[1]

    def clear(self, partition: int) -> None:
        """Forget ``partition``'s run (a new state: the agent is handed from its end again)."""
        self._runs.pop(partition, None)
