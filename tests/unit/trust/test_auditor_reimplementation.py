"""docs/auditor.md is enough to check a proof: an independent verifier built only from it.

Nothing from ``sinks``, ``processors`` or ``trust`` is used on the verifying side: hashlib,
``cryptography``, ``base64`` and ``json``, following the document step by step, and Apache
Avro's Python package for the payloads (section 5a). That covers interval checkpoints and
version 1 proofs (3b, 5), whole-log checkpoint notes (3a), version 2 proofs (5),
consistency proofs (6) and witness cosignatures (7).
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
    unsigned = dict(cp, signature={"$b64": ""})  # section 3b: the ten fields, signature emptied
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


# --- sections 3a, 5 (version 2), 6 and 7: whole-log checkpoints and witnesses ---------


def raw_public_key(pem: bytes) -> bytes:
    key = load_pem_public_key(pem)
    assert isinstance(key, Ed25519PublicKey)
    return key.public_bytes_raw()


def mth(leaves: list[bytes]) -> bytes:
    """Section 4, recursively as written."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def ed25519_ok(raw_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def note_key_id(name: str, sig_type: int, raw_key: bytes) -> bytes:
    """Section 3a step 2 / section 7: first 4 bytes of SHA-256(name || 0x0A || type || key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + raw_key).digest()[:4]


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]] | None:
    """Section 3a step 1: the text (ending in a newline) and the (name, blob) signature lines."""
    if any(ord(c) < 0x20 and c != "\n" for c in note) or "\n\n" not in note:
        return None
    cut = note.rindex("\n\n")
    text, block = note[: cut + 1], note[cut + 2 :]
    if not block.endswith("\n"):
        return None
    lines = []
    for line in block[:-1].split("\n"):
        if not line.startswith("\u2014 ") or " " not in line[2:]:
            return None
        name, b64text = line[2:].split(" ", 1)
        lines.append((name, base64.b64decode(b64text, validate=True)))
    return text, lines


def checkpoint_body(note: str, raw_log_key: bytes) -> tuple[str, int, bytes] | None:
    """Section 3a steps 1-4: (origin, size, root) of a note the log's key signed, else None."""
    parts = split_note(note)
    if parts is None:
        return None
    text, lines = parts
    body = text[:-1].split("\n")
    if len(body) != 3:  # step 4: origin, size, root; no extension lines
        return None
    origin, size_text, root_b64 = body
    key_id = note_key_id(origin, 0x01, raw_log_key)
    mine = [blob[4:] for name, blob in lines if name == origin and blob[:4] == key_id]
    if not mine or not all(ed25519_ok(raw_log_key, sig, text.encode()) for sig in mine):
        return None
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        return None
    return origin, int(size_text), base64.b64decode(root_b64, validate=True)


def cosigned_by(note: str, witness_vkey: str) -> bool:
    """Section 7: a valid cosignature/v1 line of the witness (name+keyid+base64(0x04||key))."""
    name, key_id_hex, material = witness_vkey.strip().split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == 0x04 and note_key_id(name, 0x04, raw[1:]).hex() == key_id_hex
    parts = split_note(note)
    assert parts is not None
    text, lines = parts
    for line_name, blob in lines:
        if line_name == name and blob[:4].hex() == key_id_hex:
            timestamp = int.from_bytes(blob[4:12], "big")
            message = b"cosignature/v1\ntime %d\n" % timestamp + text.encode()
            if timestamp < 2**63 and ed25519_ok(raw[1:], blob[12:], message):
                return True
    return False


def auditor_check_v2(proof: dict[str, Any], public_pem: bytes, witness_vkeys: list[str]) -> bool:
    """Section 5, version 2."""
    event = proof["event"]
    if event_hash(event) != b64(event["hash"]):
        return False
    head, _, note = proof["tlog_proof"].partition("\n\n")
    lines = head.split("\n")
    if lines[0] != "c2sp.org/tlog-proof@v1" or not lines[1].startswith("index "):
        return False
    index = int(lines[1][len("index ") :])
    path = [base64.b64decode(h, validate=True) for h in lines[2:]]
    body = checkpoint_body(note, raw_public_key(public_pem))
    if body is None:
        return False
    origin, size, root = body
    if not origin.endswith(f"/p{event['ledger_partition']}") or not all(cosigned_by(note, w) for w in witness_vkeys):
        return False
    return index == event["sequence"] < size and verify_inclusion(b64(event["hash"]), index, size, path, root)


def rfc9162_consistent(first: int, second: int, first_hash: bytes, second_hash: bytes, path: list[bytes]) -> bool:
    """Section 6 step 2, as written there."""
    if first == second:
        return not path and first_hash == second_hash
    if first == 0:
        return not path and first_hash == hashlib.sha256(b"").digest()
    if first > second or not path:
        return False
    path = list(path)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = hashlib.sha256(b"\x01" + c + fr).digest()
            sr = hashlib.sha256(b"\x01" + c + sr).digest()
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = hashlib.sha256(b"\x01" + sr + c).digest()
        fn, sn = fn >> 1, sn >> 1
    return fr == first_hash and sr == second_hash and sn == 0


def auditor_check_consistency(doc: dict[str, Any], public_pem: bytes, witness_vkeys: list[str]) -> bool:
    raw = raw_public_key(public_pem)
    old, new = checkpoint_body(doc["old_checkpoint"], raw), checkpoint_body(doc["new_checkpoint"], raw)
    if old is None or new is None or old[0] != new[0]:
        return False
    if not all(cosigned_by(doc["new_checkpoint"], w) for w in witness_vkeys):
        return False
    path = [base64.b64decode(h, validate=True) for h in doc["proof"]]
    return rfc9162_consistent(old[1], new[1], old[2], new[2], path)


def _whole_log() -> tuple[list[dict[str, Any]], list[dict[str, Any]], bytes, str]:
    """The producing side: a ledger, two whole-log checkpoints, the newer cosigned by a witness."""
    from trust.cosignature import CosignatureV1Signer
    from trust.keys import SigningKey
    from trust.note import parse_note
    from trust.partition_log import PartitionLog
    from trust.tlog_witness import with_cosignatures

    key = SigningKey.generate()
    builder = LedgerBuilder(key)
    for _ in range(6):
        builder.flow()
    log = PartitionLog(0)
    cps = []
    for ev in builder.events:
        log.append(ev["hash"])
        if log.size in (7, 18):
            cps.append(log.checkpoint(key, "p1", log.size))
    witness = CosignatureV1Signer("witness.example/w1", SigningKey.generate())
    text = parse_note(cps[1]["signature"].decode()).text.encode()
    cps[1] = with_cosignatures(cps[1], [witness.cosign(text, 1_700_000_000)])
    return builder.events, cps, key.public().to_pem(), witness.verifier.vkey


def test_independent_verifier_checks_whole_log_checkpoints_and_their_records() -> None:
    from trust.witness import checkpoint_to_json  # the export file an auditor receives

    events, cps, pem, witness = _whole_log()
    raw = raw_public_key(pem)
    for cp in cps:
        line = json.loads(json.dumps(checkpoint_to_json(cp)))
        note = bytes.fromhex(line["signature"]).decode()
        body = checkpoint_body(note, raw)
        assert body is not None and line["signature_format"] == "tlog-checkpoint/v1"
        origin, size, root = body
        assert origin == f"lockgate.example/ledger/p{line['ledger_partition']}"  # step 5
        assert (line["first_sequence"], line["last_sequence"]) == (0, size - 1)
        assert bytes.fromhex(line["merkle_root"]) == root and line["checkpoint_id"] == f"p0@{size}"
        assert mth([e["hash"] for e in events[:size]]) == root  # step 6: section 4 from sequence 0
    assert cosigned_by(bytes(cps[1]["signature"]).decode(), witness)
    assert not cosigned_by(bytes(cps[0]["signature"]).decode() + "\u2014 witness.example/w1 "
                           + base64.b64encode(b"\x00" * 76).decode() + "\n", witness)
    tampered = bytes(cps[1]["signature"]).decode().replace("\n18\n", "\n17\n")
    assert checkpoint_body(tampered, raw) is None
    assert not cosigned_by(tampered, witness)


def test_independent_verifier_accepts_every_v2_proof_and_rejects_changes() -> None:
    from trust.proofs import build_proof

    events, cps, pem, witness = _whole_log()
    for ev in events[:18]:
        proof = json.loads(json.dumps(build_proof(ev, events[:18], cps[1])))
        assert proof["version"] == 2
        assert auditor_check_v2(proof, pem, [witness])
    proof = json.loads(json.dumps(build_proof(events[3], events[:18], cps[1])))
    proof["tlog_proof"] = proof["tlog_proof"].replace("index 3\n", "index 4\n")
    assert not auditor_check_v2(proof, pem, [witness])
    unwitnessed = json.loads(json.dumps(build_proof(events[3], events[:7], cps[0])))
    assert auditor_check_v2(unwitnessed, pem, []) and not auditor_check_v2(unwitnessed, pem, [witness])


def test_independent_verifier_checks_consistency_proofs() -> None:
    from trust.consistency import build_consistency_file

    events, cps, pem, witness = _whole_log()
    doc = json.loads(json.dumps(build_consistency_file([e["hash"] for e in events], cps[0], cps[1])))
    assert auditor_check_consistency(doc, pem, [witness])
    swapped = dict(doc, old_checkpoint=doc["new_checkpoint"], new_checkpoint=doc["old_checkpoint"])
    assert not auditor_check_consistency(swapped, pem, [])
    assert not auditor_check_consistency(dict(doc, proof=doc["proof"][1:]), pem, [])
    # every size pair of a 40-leaf tree, against the library's own proofs
    from trust.merkle import consistency_proof, merkle_root

    leaves = [bytes([i]) * 32 for i in range(40)]
    for n in range(41):
        for m in range(n + 1):
            assert rfc9162_consistent(m, n, merkle_root(leaves[:m]), merkle_root(leaves[:n]),
                                      consistency_proof(leaves[:n], m)), (m, n)


# --- section 9: decision bindings, recomputed from the payloads alone ---------------------

V2_FIELDS = ("deadline", "justification", "break_glass", "proposal_sha256", "policy_sha256", "review",
             "verdict_sha256", "signed_schema")


def jsonable(value: Any) -> Any:
    """Section 1's value mapping: bytes become {"$b64": ...}."""
    if isinstance(value, bytes):
        return {"$b64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def record_hash(record: dict[str, Any]) -> bytes:
    """Section 9: SHA-256 of the canonical bytes of the record's signed fields."""
    signed = record if record.get("signed_schema", 1) == 2 else {
        k: v for k, v in record.items() if k not in V2_FIELDS}
    return hashlib.sha256(canonical(jsonable(signed))).digest()


def test_independent_bindings_check_an_honest_ledger_and_catch_a_repaired_verdict(tmp_path: Path) -> None:
    from tests.factories.decided import DecidedLedger
    from trust.keys import SigningKey

    section = AUDITOR_DOC.read_text().split("## 9.")[1].split("## 10.")[0]
    assert all(f"`{name}`" in section for name in V2_FIELDS)
    ledger = DecidedLedger(SigningKey.generate(), tmp_path)
    raw, allowed = ledger.propose("UPDATE orders SET status = 'x' WHERE id = 1")
    ledger.record_outcome(allowed)
    ledger.propose("DROP TABLE orders")
    ledger.submit(raw)  # refused as a replay
    avro = ApacheAvroCodec(schema_files(ROOT / "schemas"))
    decoded = [(e, avro.decode(e["payload"])[1]) for e in ledger.events if e["kind"] != "dead_letter"]
    proposals = {r["action_id"]: record_hash(r) for e, r in decoded if e["kind"] == "action"}
    refused = {record_hash(r) for e, r in decoded
               if e["kind"] == "security" and e["detail"].startswith("replay refused:")}
    policies = {hashlib.sha256(e["payload"]).digest(): r for e, r in decoded if e["kind"] == "policy"}
    verdicts = [r for e, r in decoded if e["kind"] == "verdict"]
    outcomes = [r for e, r in decoded if e["kind"] == "outcome"]

    def bound(v: dict[str, Any]) -> bool:
        proposal_ok = v["proposal_sha256"] == proposals.get(v["action_id"]) or (
            v["basis"] == "replay" and v["proposal_sha256"] in refused)
        policy = policies.get(v["policy_sha256"] or b"")
        policy_ok = not v["policy_name"] or (policy is not None and (policy["name"], policy["version"]) == (
            v["policy_name"], v["policy_version"]))
        return bool(proposal_ok and policy_ok)

    assert len(verdicts) == 3 and all(bound(v) for v in verdicts)
    ledger_verdicts = {record_hash(v) for v in verdicts}
    assert all(o["verdict_sha256"] == record_hash(avro.decode(o["verdict"])[1]) for o in outcomes)
    assert all(o["verdict_sha256"] in ledger_verdicts for o in outcomes)
    # the allow, moved onto the DROP's action id: its proposal hash no longer matches
    drop_id = next(aid for aid in proposals if aid != verdicts[0]["action_id"])
    assert not bound({**verdicts[0], "action_id": drop_id})
