"""docs/auditor.md is enough to check a proof: an independent verifier built only from it.

Nothing from ``sinks`` or ``processors`` is used on the verifying side: hashlib,
``cryptography`` and ``json``, following the document step by step, and Apache Avro's Python
package for the payloads (section 5a).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tests.factories.ledger import LedgerBuilder  # the producing side only
from tests.unit.schemas.apache_avro_codec import ApacheAvroCodec
from tests.unit.schemas.codec_samples import LEGACY_AUDIT_EVENT, LEGACY_VERDICT

ROOT = Path(__file__).resolve().parents[3]
AUDITOR_DOC = ROOT / "docs" / "auditor.md"
KIND_SCHEMA = {"action": "ProposedAction", "verdict": "Verdict", "outcome": "ActionOutcome", "policy": "PolicySet"}


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64(value: dict[str, str]) -> bytes:
    return base64.b64decode(value["$b64"])


def event_hash(event: dict[str, Any]) -> bytes:
    body = {k: v for k, v in event.items() if k not in ("hash", "prev_hash")}
    return hashlib.sha256(canonical(body) + b64(event["prev_hash"])).digest()


def verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    if index >= size:
        return False
    fn, sn = index, size - 1
    r = hashlib.sha256(b"\x00" + leaf).digest()
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def auditor_check(proof_text: str, public_pem: bytes) -> bool:
    proof = json.loads(proof_text)
    event, cp = proof["event"], proof["checkpoint"]
    if event_hash(event) != b64(event["hash"]):
        return False
    key = load_pem_public_key(public_pem)
    assert isinstance(key, Ed25519PublicKey)
    raw = key.public_bytes_raw()
    if hashlib.sha256(raw).hexdigest()[:16] != cp["key_id"]:
        return False
    unsigned = dict(cp, signature={"$b64": ""})
    try:
        key.verify(b64(cp["signature"]), canonical(unsigned))
    except InvalidSignature:
        return False
    if event["ledger_partition"] != cp["ledger_partition"]:
        return False
    index = event["sequence"] - cp["first_sequence"]
    size = cp["last_sequence"] - cp["first_sequence"] + 1
    path = [bytes.fromhex(h) for h in proof["audit_path"]]
    return verify_inclusion(b64(event["hash"]), index, size, path, b64(cp["merkle_root"]))


def _proofs() -> tuple[list[str], bytes]:
    from trust.checkpoints import build_checkpoint
    from trust.keys import SigningKey
    from trust.proofs import build_proof

    key = SigningKey.generate()
    builder = LedgerBuilder(key)
    for _ in range(5):
        builder.flow()
    events = builder.events
    cp = build_checkpoint(events, key, "p1", 1)
    from trust.canonical import canonical_bytes

    texts = [canonical_bytes(build_proof(e, events, cp)).decode() for e in events]
    return texts, key.public().to_pem()


def test_independent_verifier_accepts_every_proof() -> None:
    texts, pem = _proofs()
    assert all(auditor_check(t, pem) for t in texts)


def test_independent_verifier_rejects_a_changed_byte() -> None:
    texts, pem = _proofs()
    proof = json.loads(texts[5])
    payload = bytearray(b64(proof["event"]["payload"]))
    payload[0] ^= 1
    proof["event"]["payload"] = {"$b64": base64.b64encode(bytes(payload)).decode()}
    assert not auditor_check(json.dumps(proof), pem)


def schema_files(directory: Path) -> list[Path]:
    """Section 5a: ``Actor.avsc`` and ``MatchedRule.avsc`` first, then the rest."""
    first = [directory / "Actor.avsc", directory / "MatchedRule.avsc"]
    return first + sorted(p for p in directory.glob("*.avsc") if p not in first)


def legacy_fingerprints() -> dict[bytes, str]:
    """Section 5a's table of legacy fingerprints, read from the document itself."""
    rows = re.findall(r"^\| `(\w+)` \| `([0-9a-f]{16})` \|$", AUDITOR_DOC.read_text(), re.MULTILINE)
    return {bytes.fromhex(fp): f"dev.lockgate.{name}" for name, fp in rows}


def test_independent_decoder_reads_every_payload() -> None:
    texts, _ = _proofs()
    avro = ApacheAvroCodec(schema_files(ROOT / "schemas"))
    for text in texts:
        event = json.loads(text)["event"]
        name, record = avro.decode(b64(event["payload"]))
        assert name == f"dev.lockgate.{KIND_SCHEMA[event['kind']]}"
        assert record["action_id"] == event["action_id"]
        if event["kind"] == "outcome":
            assert avro.decode(record["verdict"])[0] == "dev.lockgate.Verdict"


def test_independent_decoder_reads_legacy_payloads_with_the_documented_table() -> None:
    from schemas.codec import LEGACY_FINGERPRINTS  # the producing side, to hold the table to it

    table = legacy_fingerprints()
    assert table == {fp: f"dev.lockgate.{name}" for fp, (_, name) in LEGACY_FINGERPRINTS.items()}
    avro = ApacheAvroCodec(schema_files(ROOT / "schemas" / "released" / "v1"), aliases=table)
    name, event = avro.decode(LEGACY_AUDIT_EVENT)
    assert name == "dev.lockgate.AuditEvent"
    assert event["payload"] == LEGACY_VERDICT
    assert avro.decode(event["payload"])[1]["matched_rules"][0]["id"] == "r1"
