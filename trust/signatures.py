"""Record signatures: who signs what, over which bytes.

The processor signs every Verdict and Checkpoint (``signature`` field, cleared to ``b""``
while signing); each producing service signs its ProposedAction and ActionOutcome records
(``service_signature``, cleared to ``None``). The signed bytes are always
``trust.canonical.signing_payload(record, field, cleared)`` — the record's ``key_id`` /
``service_key_id`` is inside them, so a signature cannot be re-labelled as another key's.
See ``docs/CONTRACTS.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trust.canonical import signing_payload
from trust.keys import Keyring, PublicKey, SigningKey

__all__ = ["sign_record", "verify_record"]


def _key_id_field(signature_field: str) -> str:
    # "signature" -> "key_id", "service_signature" -> "service_key_id"
    return signature_field[: -len("signature")] + "key_id"


def sign_record(
    record: Mapping[str, Any],
    field: str,
    cleared: Any,
    key: SigningKey,
    *,
    key_id_field: str | None = None,
) -> dict[str, Any]:
    """Return a copy of ``record`` signed by ``key``.

    Sets the key id field (``key_id`` for ``signature``, ``service_key_id`` for
    ``service_signature``, or ``key_id_field``) to ``key.key_id`` first, so the key id is
    covered by the signature, then sets ``field`` to the signature over
    ``signing_payload(record, field, cleared)``.
    """
    signed = dict(record)
    signed[key_id_field or _key_id_field(field)] = key.key_id
    signed[field] = key.sign(signing_payload(signed, field, cleared))
    return signed


def verify_record(
    record: Mapping[str, Any],
    field: str,
    cleared: Any,
    keys: Keyring | PublicKey,
    *,
    key_id_field: str | None = None,
    at_us: int | None = None,
) -> bool:
    """True iff ``record[field]`` is a valid signature by the key its key id field names.

    With a :class:`PublicKey`, the record's key id must be that key's. With a
    :class:`Keyring`, expiry is judged at ``at_us`` (default: now). Never raises on a
    malformed record; an unsigned record is simply not valid.
    """
    try:
        key_id = record.get(key_id_field or _key_id_field(field))
        signature = record.get(field)
        if not isinstance(key_id, str) or not isinstance(signature, bytes):
            return False
        payload = signing_payload(record, field, cleared)
    except (TypeError, ValueError, AttributeError):
        return False
    if isinstance(keys, PublicKey):
        return key_id == keys.key_id and keys.verify(payload, signature)
    return keys.verify(key_id, payload, signature, at_us)

