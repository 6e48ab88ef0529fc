"""``lockgate verify``, ``checkpoints export``, ``prove``, ``verify-proof``: the trust commands.

They wire :mod:`sinks.ledger_source` (where the ledger is read from) to the pure engines
:mod:`sinks.ledger_verify` and :mod:`sinks.proofs`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lockgate.errors import ConfigError
from lockgate.output import EXIT_NEGATIVE, EXIT_OK, emit_json

__all__ = ["load_checkpoint_file", "register"]

CHECKPOINT_FILE_FORMAT = "lockgate.checkpoint"
_CP_BYTES = ("head_hash", "merkle_root", "signature")
_CP_INTS = ("ledger_partition", "first_sequence", "last_sequence", "created_at")
_CP_STRS = ("checkpoint_id", "processor_id", "key_id")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _progress(message: str) -> None:
    print(f"lockgate: {message}", file=sys.stderr, flush=True)


def _home() -> Path:
    from lockgate.context import home

    return home()


def _public_key(path: Path | None) -> Any:
    from schemas.signing import PublicKey

    key_path = path or _home() / "keys" / "processor.pub.pem"
    if not key_path.exists():
        raise ConfigError(
            f"no processor public key at {key_path}; give --public-key PEM, or run `lockgate up` "
            "once so the processor key exists"
        )
    return PublicKey.load(key_path)


def _parse_duration(raw: str) -> int:
    m = _DURATION.match(raw.strip())
    if not m:
        raise ConfigError(f"--since {raw!r} is not a duration; use e.g. 90s, 30m, 24h, 7d, 2w")
    return int(m.group(1)) * _UNIT_S[m.group(2)] * 1_000_000


# -- checkpoint files -----------------------------------------------------------------


def _checkpoint_to_json(cp: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"format": CHECKPOINT_FILE_FORMAT}
    for name in _CP_STRS + _CP_INTS:
        out[name] = cp[name]
    for name in _CP_BYTES:
        out[name] = bytes(cp[name]).hex()
    return out


def load_checkpoint_file(path: Path) -> list[dict[str, Any]]:
    """Checkpoints from a ``lockgate checkpoints export`` file (format in its --help)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoint file {path}: {exc}") from exc
    out: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            data = json.loads(line)
            if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FILE_FORMAT:
                raise ValueError(f"not a {CHECKPOINT_FILE_FORMAT} line")
            cp: dict[str, Any] = {}
            for name in _CP_STRS:
                if not isinstance(data[name], str):
                    raise ValueError(f"{name} must be a string")
                cp[name] = data[name]
            for name in _CP_INTS:
                if type(data[name]) is not int:
                    raise ValueError(f"{name} must be an integer")
                cp[name] = data[name]
            for name in _CP_BYTES:
                cp[name] = bytes.fromhex(data[name])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{where}: invalid checkpoint line: {exc}") from exc
        out.append(cp)
    return out


# -- verify ---------------------------------------------------------------------------


def _finding_json(f: Any) -> dict[str, Any]:
    return {
        "kind": str(f.kind), "partition": f.partition, "sequence": f.sequence,
        "event_id": f.event_id, "checkpoint_id": f.checkpoint_id, "action_id": f.action_id,
        "message": f.message,
    }


def _witness_findings(stored: list[dict[str, Any]], witness: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id: dict[str, list[dict[str, Any]]] = {}
    for cp in stored:
        by_id.setdefault(cp["checkpoint_id"], []).append(cp)
    out: list[dict[str, Any]] = []
    for w in witness:
        found = by_id.get(w["checkpoint_id"], [])
        base = {"partition": w["ledger_partition"], "sequence": w["first_sequence"], "event_id": None,
                "checkpoint_id": w["checkpoint_id"], "action_id": None}
        if not found:
            out.append({**base, "kind": "witness_checkpoint_missing",
                        "message": f"checkpoint {w['checkpoint_id']!r} of the witness file is not stored"})
            continue
        for cp in found:
            diff = [k for k in (*_CP_STRS, *_CP_INTS, *_CP_BYTES) if cp.get(k) != w[k]]
            if diff:
                out.append({**base, "kind": "witness_checkpoint_differs",
                            "message": f"stored checkpoint {w['checkpoint_id']!r} differs from the "
                            f"witness copy in {', '.join(diff)}"})
    return out


def _since_anchors(cps: list[dict[str, Any]], cutoff_us: int, keyring: Any) -> dict[int, tuple[int, bytes]]:
    """Per partition, start after the newest validly signed checkpoint created before the cutoff."""
    from processors.checkpoints import verify_checkpoint

    best: dict[int, dict[str, Any]] = {}
    for cp in cps:
        if cp["created_at"] >= cutoff_us or not verify_checkpoint(cp, keyring):
            continue
        cur = best.get(cp["ledger_partition"])
        if cur is None or cp["last_sequence"] > cur["last_sequence"]:
            best[cp["ledger_partition"]] = cp
    return {p: (cp["last_sequence"] + 1, cp["head_hash"]) for p, cp in best.items()}


def cmd_verify(args: argparse.Namespace) -> int:
    from schemas.signing import Keyring
    from sinks.ledger_source import ClickHouseSource, load_from_topics, open_source
    from sinks.ledger_verify import verify_ledger

    started = time.monotonic()
    keyring = Keyring([_public_key(None)])
    witness = load_checkpoint_file(Path(args.checkpoints)) if args.checkpoints else []
    position_key: str | None = None
    if args.from_topics:
        from lockgate.context import bootstrap, topics

        where = f"topics {topics().prefix}audit and {topics().prefix}checkpoints"
        _progress(f"reading {where} from the beginning")
        events, stored = load_from_topics(bootstrap(), topics().prefix, _progress)
        position_key = "_position"
    else:
        source = open_source(_progress)
        where = source.description
        try:
            stored = source.checkpoints()
            if args.since and isinstance(source, ClickHouseSource):
                anchors0 = _since_anchors(stored, time.time_ns() // 1000 - _parse_duration(args.since),
                                          keyring)
                events = source.events_from({p: a[0] for p, a in anchors0.items()})
            else:
                events = source.events()
        finally:
            source.close()
    anchors: dict[int, tuple[int, bytes]] = {}
    all_cps = stored + witness
    if args.since:
        anchors = _since_anchors(all_cps, time.time_ns() // 1000 - _parse_duration(args.since), keyring)
        events = [e for e in events
                  if e["ledger_partition"] not in anchors or e["sequence"] >= anchors[e["ledger_partition"]][0]]
        all_cps = [c for c in all_cps
                   if c["ledger_partition"] not in anchors
                   or c["first_sequence"] >= anchors[c["ledger_partition"]][0]]
    _progress(f"verifying {len(events)} events and {len(all_cps)} checkpoints from {where}")
    findings = [_finding_json(f) for f in verify_ledger(events, all_cps, keyring,
                                                        position_key=position_key, anchors=anchors)]
    findings += _witness_findings(stored, witness)
    partitions = sorted({e["ledger_partition"] for e in events})
    report = {
        "ok": not findings, "source": where, "events": len(events),
        "checkpoints": len(stored), "witness_checkpoints": len(witness),
        "partitions": partitions,
        "findings": findings, "seconds": round(time.monotonic() - started, 3),
    }
    if args.json:
        emit_json(report)
    else:
        for f in findings:
            print(f"{f['kind']:<26} partition {f['partition']} sequence {f['sequence']} "
                  f"event {f['event_id'] or '-'}: {f['message']}")
        verdict = "OK" if not findings else f"{len(findings)} finding(s)"
        print(f"{verdict}: {len(events)} events in {len(partitions)} partition(s), "
              f"{len(stored)} checkpoints, from {where}")
    return EXIT_OK if not findings else EXIT_NEGATIVE


# -- checkpoints export ---------------------------------------------------------------


def cmd_checkpoints_export(args: argparse.Namespace) -> int:
    from sinks.ledger_source import open_source

    source = open_source(_progress)
    try:
        cps = source.checkpoints()
    finally:
        source.close()
    lines = "".join(json.dumps(_checkpoint_to_json(cp), sort_keys=True) + "\n" for cp in cps)
    if args.file == "-":
        sys.stdout.write(lines)
        return EXIT_OK
    Path(args.file).write_text(lines, encoding="utf-8")
    if args.json:
        emit_json({"file": args.file, "checkpoints": len(cps)})
    else:
        print(f"wrote {len(cps)} checkpoints to {args.file}")
    return EXIT_OK


# -- prove / verify-proof -------------------------------------------------------------


def cmd_prove(args: argparse.Namespace) -> int:
    from processors.checkpoints import verify_checkpoint
    from schemas.signing import Keyring
    from sinks.ledger_source import open_source
    from sinks.proofs import ProofError, build_proof

    keyring = Keyring([_public_key(None)])
    source = open_source(_progress)
    proofs: list[dict[str, Any]] = []
    unproven: list[dict[str, Any]] = []
    try:
        events = sorted(source.action_events(args.action_id),
                        key=lambda e: (e["ledger_partition"], e["sequence"]))
        if not events:
            raise ConfigError(f"no audit events for action {args.action_id!r} in {source.description}")
        cps = [c for c in source.checkpoints() if verify_checkpoint(c, keyring)]
        for ev in events:
            covering = sorted(
                (c for c in cps if c["ledger_partition"] == ev["ledger_partition"]
                 and c["first_sequence"] <= ev["sequence"] <= c["last_sequence"]),
                key=lambda c: c["last_sequence"] - c["first_sequence"],
            )
            if not covering:
                unproven.append({"event_id": ev["event_id"], "sequence": ev["sequence"],
                                 "reason": "no signed checkpoint covers it yet; try again later"})
                continue
            cp = covering[0]
            interval = source.interval(cp["ledger_partition"], cp["first_sequence"], cp["last_sequence"])
            try:
                proofs.append(build_proof(ev, interval, cp))
            except ProofError as exc:
                unproven.append({"event_id": ev["event_id"], "sequence": ev["sequence"], "reason": str(exc)})
    finally:
        source.close()
    bundle = {"action_id": args.action_id, "proofs": proofs, "unproven": unproven}
    text = json.dumps(bundle, indent=2, sort_keys=True) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        _progress(f"wrote {len(proofs)} proof(s) to {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK if proofs and not unproven else EXIT_NEGATIVE


def cmd_verify_proof(args: argparse.Namespace) -> int:
    from sinks.proofs import verify_proof

    key = _public_key(Path(args.public_key) if args.public_key else None)
    try:
        doc = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read proof file {args.file}: {exc}") from exc
    proofs = doc["proofs"] if isinstance(doc, dict) and "proofs" in doc else [doc]
    if not isinstance(proofs, list) or not proofs:
        results = [{"ok": False, "reason": "the file holds no proof"}]
    else:
        results = []
        for p in proofs:
            ok, reason = verify_proof(p, key)
            results.append({"ok": ok, "reason": reason})
    all_ok = all(r["ok"] for r in results)
    if args.json:
        emit_json({"ok": all_ok, "results": results})
    else:
        for r in results:
            print(f"{'valid' if r['ok'] else 'INVALID'}: {r['reason']}")
    return EXIT_OK if all_ok else EXIT_NEGATIVE


# -- registration ---------------------------------------------------------------------

_VERIFY_DESC = """\
Verify the audit ledger: recompute every event's hash and each partition's chain,
check every checkpoint's Ed25519 signature (processor key from
$LOCKGATE_HOME/keys/processor.pub.pem), its Merkle root and head against the stored
events, and that every committed outcome had a validly signed allow verdict.

The ledger is read from ClickHouse directly when no sink owns the embedded directory,
else through the running sink's API (an all-tenant token is created for the run and
revoked after it). Through the API a second row at an existing sequence is not visible:
stop the sink (`lockgate down`) for the full check. --from-topics reads the replay
topics instead (from the beginning to the high watermark).

Each finding names its kind, ledger partition, sequence and event id. Kinds:
modified_record, deleted_record, inserted_record, reordered_records, truncated_tail,
forged_checkpoint, altered_checkpoint, forged_verdict, undecodable_payload,
commit_without_allow, verdict_after_commit, verdict_for_other_action,
embedded_verdict_missing, embedded_verdict_forged, embedded_verdict_mismatch, and with
--checkpoints: witness_checkpoint_missing, witness_checkpoint_differs.
Progress goes to stderr."""

_VERIFY_EPILOG = """\
examples:
  lockgate verify
  lockgate verify --since 24h --json
  lockgate checkpoints export witness.jsonl   # keep this copy somewhere else
  lockgate verify --checkpoints witness.jsonl
  lockgate verify --from-topics

exit status:
  0  no findings
  1  findings (printed; with --json under "findings")
  2  an error: no key, ClickHouse or the sink unreachable, bad arguments"""

_EXPORT_DESC = """\
Write every stored checkpoint to FILE ("-" for stdout) as JSON lines, one checkpoint
per line, sorted keys:

  {"format": "lockgate.checkpoint", "checkpoint_id": "p0:0-63", "ledger_partition": 0,
   "first_sequence": 0, "last_sequence": 63, "created_at": <int microseconds UTC>,
   "processor_id": "...", "key_id": "<16 hex>", "head_hash": "<64 hex>",
   "merkle_root": "<64 hex>", "signature": "<128 hex>"}

Bytes are lowercase hex. Keep the file outside the ledger's trust domain (a witness
copy); `lockgate verify --checkpoints FILE` then also reports stored checkpoints that
differ from it or are missing, and checks the chain against the witness copies."""

_PROVE_DESC = """\
Build inclusion proofs for every audit event of ACTION_ID (the proposal, its verdict,
its outcome): each proof carries the event, the signed checkpoint whose interval covers
it, and the RFC 6962 audit path from the event's hash to the checkpoint's Merkle root.
Anyone with the processor's public key can check it offline (`lockgate verify-proof`).

Output: {"action_id": ..., "proofs": [<lockgate.inclusion-proof v1>...],
"unproven": [{"event_id", "sequence", "reason"}...]} (format of a proof: sinks/proofs.py).
Events not yet covered by a checkpoint are listed under "unproven"."""

_VERIFY_PROOF_DESC = """\
Check a proof file offline: a single lockgate.inclusion-proof object, or the output of
`lockgate prove` (every proof in it must verify). Needs only the processor's public key
(default $LOCKGATE_HOME/keys/processor.pub.pem)."""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("verify", help="verify the audit ledger's chain, checkpoints and verdicts",
                       formatter_class=fmt, description=_VERIFY_DESC, epilog=_VERIFY_EPILOG)
    p.add_argument("--since", metavar="DURATION",
                   help="only events after the newest checkpoint older than DURATION (90s, 30m, 24h, 7d)")
    p.add_argument("--checkpoints", metavar="FILE", help="witness copy from `lockgate checkpoints export`")
    p.add_argument("--from-topics", action="store_true", help="read the replay topics instead of ClickHouse")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("checkpoints", help="export signed checkpoints (witness copy)", formatter_class=fmt,
                       description="Work with the ledger's signed checkpoints.")
    cps = p.add_subparsers(dest="checkpoints_command", metavar="SUBCOMMAND", required=True)
    e = cps.add_parser("export", help="write every checkpoint as JSON lines", formatter_class=fmt,
                       description=_EXPORT_DESC,
                       epilog="examples:\n  lockgate checkpoints export /mnt/witness/cps.jsonl\n"
                       "  lockgate checkpoints export - | gzip > cps.jsonl.gz\n\n"
                       "exit status:\n  0  written\n  2  an error")
    e.add_argument("file", metavar="FILE", help='output file, or "-" for stdout')
    e.add_argument("--json", action="store_true", help="print a JSON summary")
    e.set_defaults(handler=cmd_checkpoints_export)

    p = sub.add_parser("prove", help="inclusion proofs for one action's audit events",
                       formatter_class=fmt, description=_PROVE_DESC,
                       epilog="examples:\n  lockgate prove 6f1c...-action-id --out proof.json\n"
                       "  lockgate verify-proof proof.json\n\n"
                       "exit status:\n  0  every event proven\n  1  some events not provable (see"
                       " \"unproven\")\n  2  an error (no such action, storage unreachable)")
    p.add_argument("action_id", metavar="ACTION_ID")
    p.add_argument("--out", metavar="FILE", help="write the proofs here instead of stdout")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_prove)

    p = sub.add_parser("verify-proof", help="check an inclusion proof offline",
                       formatter_class=fmt, description=_VERIFY_PROOF_DESC,
                       epilog="examples:\n  lockgate verify-proof proof.json\n"
                       "  lockgate verify-proof proof.json --public-key processor.pub.pem\n\n"
                       "exit status:\n  0  valid\n  1  invalid (the reason is printed)\n  2  an error")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--public-key", metavar="PEM", help="processor public key (PEM)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_verify_proof)

