"""The hashes that bind a decision's records to each other (schema set v2).

A Verdict commits to the proposal it decides (``proposal_sha256``) and to the policy
version it applied (``policy_sha256``); an ActionOutcome commits to the verdict it ran
under (``verdict_sha256``); a ReviewVote commits to the proposal the reviewer saw. Each
hash is SHA-256 over ``trust.canonical.canonical_bytes`` of the decoded record's signed
fields (``trust.canonical.signed_fields``: the fields of its ``signed_schema`` release,
signatures included), so it does not change when a later schema release adds fields, and
an auditor recomputes it from the ledger payload alone (docs/auditor.md).

The policy hash is different: ``policy_sha256`` is SHA-256 of the PolicySet record's
single-object-encoded bytes exactly as published on the ``policies`` topic, which are
byte for byte the payload of the ledger's ``policy`` event (``lockgate policy apply``
writes both). Nothing is decoded or re-encoded to recompute it, so it never changes when
the schema or the codec does (:func:`policy_sha256`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from trust.canonical import canonical_bytes, signed_fields

__all__ = ["policy_sha256", "record_sha256"]


def record_sha256(record: Mapping[str, Any]) -> bytes:
    """SHA-256 of the canonical bytes of a decoded record's signed fields (32 bytes)."""
    return hashlib.sha256(canonical_bytes(signed_fields(record))).digest()


def policy_sha256(encoded: bytes) -> bytes:
    """SHA-256 of a policy version: of its encoded PolicySet bytes as published (32 bytes)."""
    return hashlib.sha256(encoded).digest()
