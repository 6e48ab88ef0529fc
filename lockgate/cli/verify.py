"""``lockgate verify``, ``checkpoints export``, ``prove``, ``verify-proof``: the trust commands.

They wire :mod:`sinks.ledger_source` (where the ledger is read from) to the pure engines
:mod:`trust.verify` and :mod:`trust.proofs`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lockgate.cli.output import EXIT_NEGATIVE, EXIT_OK, emit_json, progress
from lockgate.kernel.durations import parse_duration_us
from lockgate.kernel.errors import ConfigError
from lockgate.kernel.home import Home
from trust.witness import checkpoint_to_json, load_checkpoint_file, since_anchors, witness_findings

__all__ = ["register"]



def _home() -> Path:
    from lockgate.cli.context import home

    return home()


def _public_key(path: Path | None) -> Any:
    from trust.keys import PublicKey

    key_path = path or Home(_home()).processor_public_key
    if not key_path.exists():
        raise ConfigError(
            f"no processor public key at {key_path}; give --public-key PEM, or run `lockgate up` "
            "once so the processor key exists"
        )
    return PublicKey.load(key_path)


# -- verify ---------------------------------------------------------------------------


def _checkpoint_interval_s(given: float | None) -> float:
    """``--checkpoint-interval``, else the processor's own setting (its env var or default)."""
    if given is not None:
        if given <= 0:
            raise ConfigError(f"--checkpoint-interval must be positive, got {given}")
        return given
    from pydantic import ValidationError

    from processors.settings import ProcessorSettings

    try:
        return ProcessorSettings().checkpoint_interval_s
    except ValidationError as exc:
        raise ConfigError(f"the processor settings in the environment are invalid: {exc}") from exc


def _finding_json(f: Any) -> dict[str, Any]:
    return {
        "kind": str(f.kind), "partition": f.partition, "sequence": f.sequence,
        "event_id": f.event_id, "checkpoint_id": f.checkpoint_id, "action_id": f.action_id,
        "message": f.message,
    }


def cmd_verify(args: argparse.Namespace) -> int:
    from lockgate.cli.sources import open_source
    from sinks.ledger_source import ClickHouseSource, load_from_topics
    from trust.keys import Keyring
    from trust.verify import CoverageRule, verify_ledger

    started = time.monotonic()
    interval_s = _checkpoint_interval_s(args.checkpoint_interval)
    keyring = Keyring([_public_key(None)])
    witness = load_checkpoint_file(Path(args.checkpoints)) if args.checkpoints else []
    position_key: str | None = None
    if args.from_topics:
        from lockgate.cli.context import bootstrap, topics

        where = f"topics {topics().prefix}audit and {topics().prefix}checkpoints"
        progress(f"reading {where} from the beginning")
        events, stored = load_from_topics(bootstrap(), topics().prefix, progress)
        position_key = "_position"
    else:
        source = open_source(progress)
        where = source.description
        try:
            stored = source.checkpoints()
            if args.since and isinstance(source, ClickHouseSource):
                anchors0 = since_anchors(stored, time.time_ns() // 1000 - parse_duration_us(args.since, "--since"),
                                          keyring)
                events = source.events_from({p: a[0] for p, a in anchors0.items()})
            else:
                events = source.events()
        finally:
            source.close()
        if events and all("_position" in e for e in events):
            position_key = "_position"  # the store keeps each row's audit-topic offset
    anchors: dict[int, tuple[int, bytes]] = {}
    all_cps = stored + witness
    if args.since:
        anchors = since_anchors(all_cps, time.time_ns() // 1000 - parse_duration_us(args.since, "--since"), keyring)
        events = [e for e in events
                  if e["ledger_partition"] not in anchors or e["sequence"] >= anchors[e["ledger_partition"]][0]]
        all_cps = [c for c in all_cps
                   if c["ledger_partition"] not in anchors
                   or c["first_sequence"] >= anchors[c["ledger_partition"]][0]]
    progress(f"verifying {len(events)} events and {len(all_cps)} checkpoints from {where}")
    coverage = CoverageRule(int(interval_s * 1e6), time.time_ns() // 1000)
    findings = [_finding_json(f) for f in verify_ledger(events, all_cps, keyring, position_key=position_key,
                                                        anchors=anchors, coverage=coverage)]
    findings += witness_findings(stored, witness)
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
    from lockgate.cli.sources import open_source

    source = open_source(progress)
    try:
        cps = source.checkpoints()
    finally:
        source.close()
    lines = "".join(json.dumps(checkpoint_to_json(cp), sort_keys=True) + "\n" for cp in cps)
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
    from lockgate.cli.sources import open_source
    from trust.checkpoints import verify_checkpoint
    from trust.keys import Keyring
    from trust.proofs import ProofError, build_proof

    keyring = Keyring([_public_key(None)])
    source = open_source(progress)
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
        progress(f"wrote {len(proofs)} proof(s) to {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_OK if proofs and not unproven else EXIT_NEGATIVE


def cmd_verify_proof(args: argparse.Namespace) -> int:
    from trust.proofs import verify_proof

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
events, that no event is chained twice, that every event older than twice the
checkpoint interval is covered by a signed checkpoint (so it can be proven), and that
every committed outcome had a validly signed allow verdict.

The ledger is read from ClickHouse directly when no sink owns the embedded directory,
else through the running sink's API (an all-tenant token is created for the run and
revoked after it). Through the API a second row at an existing sequence is not visible:
stop the sink (`lockgate down`) for the full check. --from-topics reads the replay
topics instead (from the beginning to the high watermark).

Each finding names its kind, ledger partition, sequence and event id. Kinds:
modified_record, deleted_record, inserted_record, reordered_records, truncated_tail,
forged_checkpoint, altered_checkpoint, duplicate_event, uncovered_event, forged_verdict,
undecodable_payload,
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
"unproven": [{"event_id", "sequence", "reason"}...]} (format of a proof: trust/proofs.py).
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
    p.add_argument("--checkpoint-interval", metavar="SECONDS", type=float,
                   help="the processor's checkpoint interval: events older than twice this that no "
                        "checkpoint covers are uncovered_event (default: the processor's setting, "
                        "LOCKGATE_CHECKPOINT_INTERVAL_S, else 5)")
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

