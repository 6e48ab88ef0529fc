"""Derived event ids must never change: the ledger drops a re-processed input's events by id."""

from __future__ import annotations

import uuid

import pytest

from schemas.records import _EVENT_NAMESPACE, AuditKind, event_id_for


@pytest.mark.parametrize("source", [
    ("lockgate.actions", 0, 0),
    ("lockgate.actions", 11, 2**40),
    ("t", -1, "é✓ ünïcode"),
    ("outcome", "6b0f", "ab" * 32),
    (),
])
@pytest.mark.parametrize("kind", list(AuditKind))
def test_event_id_is_the_rfc_4122_uuid5_of_kind_and_source(kind: AuditKind, source: tuple[object, ...]) -> None:
    name = "|".join([str(kind), *(str(part) for part in source)])
    assert event_id_for(kind, *source) == str(uuid.uuid5(_EVENT_NAMESPACE, name))


def test_a_known_event_id_is_pinned() -> None:
    # Written once from uuid.uuid5; a change here re-identifies every event already chained.
    assert event_id_for(AuditKind.ACTION, "lockgate.actions", 3, 17) == str(
        uuid.uuid5(uuid.UUID("6c0c4b1e-3f0a-5d8e-9a57-1f5b0c6e2d41"), "action|lockgate.actions|3|17"))
    assert uuid.UUID(event_id_for(AuditKind.VERDICT, "x", 1, 2)).version == 5


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError):
        event_id_for("not-a-kind", "x", 1, 2)
