"""The hashes that bind a decision's records to each other (schema set v2).

A Verdict commits to the proposal it decides (``proposal_sha256``) and to the policy
version it applied (``policy_sha256``); an ActionOutcome commits to the verdict it ran
under (``verdict_sha256``); a ReviewVote commits to the proposal the reviewer saw. Each
hash is SHA-256 over ``trust.canonical.canonical_bytes`` of the decoded record's signed
fields (``trust.canonical.signed_fields``: the fields of its ``signed_schema`` release,
signatures included), so it does not change when a later schema release adds fields, and
an auditor recomputes it from the ledger payload alone (docs/auditor.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from trust.canonical import canonical_bytes, signed_fields

__all__ = ["record_sha256"]


def record_sha256(record: Mapping[str, Any]) -> bytes:
    """SHA-256 of the canonical bytes of a decoded record's signed fields (32 bytes)."""
    return hashlib.sha256(canonical_bytes(signed_fields(record))).digest()
