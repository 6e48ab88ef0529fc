"""The ledger-source interface: what the verify engine, proofs and history read.

Like tessera's ``fsck`` reads through a small fetcher, every trust command reads through a
:class:`LedgerSource`; the implementations (the store, the sink's API, the replay topics)
live on the edge (:mod:`sinks.ledger_source`) and the CLI picks one.

Shape: every chained AuditEvent is a dict of its twelve fields (``payload``,
``prev_hash``, ``hash`` as ``bytes``; times as int microseconds), plus ``_position`` (the
row's storage position when the source has one, else absent); every Checkpoint is a dict of
its ten fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["LedgerSource", "Progress", "quiet"]

Progress = Callable[[str], None]
"""Where a long read reports progress (one line per call)."""


def quiet(_: str) -> None:
    """A :data:`Progress` that says nothing."""
    return None


class LedgerSource(Protocol):
    """What the trust commands read."""

    description: str

    def events(self, since_us: int | None = None) -> list[dict[str, Any]]:
        """Chained AuditEvents (``recorded_at >= since_us`` when given)."""
        ...

    def checkpoints(self) -> list[dict[str, Any]]:
        """Every stored Checkpoint."""
        ...

    def action_events(self, action_id: str) -> list[dict[str, Any]]:
        """The audit events of one action."""
        ...

    def interval(self, partition: int, first: int, last: int) -> list[dict[str, Any]]:
        """Events ``first..last`` of ``partition``."""
        ...

    def actions(self, params: dict[str, str]) -> dict[str, Any]:
        """One row per action, filtered by ``/api/actions`` parameters: ``{actions, next_cursor}``."""
        ...

    def close(self) -> None:
        """Release connections, revoke temporary tokens."""
        ...
