"""What the processor cores' unit tests share: a service registry with one service, and its proposals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trust.keys import SigningKey
from trust.registry import ServiceRegistry
from trust.signatures import sign_record


@pytest.fixture
def registry(tmp_path: Path) -> tuple[ServiceRegistry, SigningKey]:
    """A registry in ``tmp_path`` holding the service ``billing``, and billing's signing key."""
    reg = ServiceRegistry(tmp_path)
    key, _ = reg.add_service("billing")
    return reg, key


def proposal(key: SigningKey | None, **over: Any) -> dict[str, Any]:
    """A ProposedAction record from ``billing`` (a DELETE on db/prod/orders), signed with ``key``
    unless it is ``None``; ``over`` replaces fields before signing."""
    rec: dict[str, Any] = {
        "action_id": "a-1", "correlation_id": "c-1", "proposed_at": 1, "tenant": "default",
        "service": "billing", "actor": {"id": "alice", "roles": [], "attributes": {}},
        "type": "db.query", "resource": "db/prod/orders", "attributes": {"sql": "DELETE FROM orders"},
        "change_json": None, "reply_topic": "lockgate.verdicts", "reply_partition": 2,
        "reply_instance": "inst", "service_key_id": None, "service_signature": None,
    }
    rec.update(over)
    return sign_record(rec, "service_signature", None, key) if key else rec
