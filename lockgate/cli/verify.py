"""``lockgate verify``, ``checkpoints export``, ``prove``, ``verify-proof``: the trust commands.

They wire :mod:`sinks.ledger_source` (where the ledger is read from) to the pure engines
:mod:`trust.verify` and :mod:`trust.proofs`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
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


def _finding_json(f: Any) -> dict[str, Any]:
    return {
        "kind": str(f.kind), "partition": f.partition, "sequence": f.sequence,
        "event_id": f.event_id, "checkpoint_id": f.checkpoint_id, "action_id": f.action_id,
        "table": f.table, "column": f.column, "stored": f.stored, "ledger": f.ledger,
        "message": f.message,
    }


def _landed(committed: dict[tuple[str, int], int], audit_topic: str, checkpoints_topic: str,
            cp_positions: dict[str, tuple[int, int]]) -> Callable[[Mapping[str, Any]], bool]:
    """Whether the store must hold a replay record: the sink committed past its offset."""
    def landed(rec: Mapping[str, Any]) -> bool:
        pos = rec.get("_position")
        if pos is not None:
            return bool(pos[1] < committed.get((audit_topic, pos[0]), 0))
        pos = cp_positions.get(str(rec.get("checkpoint_id")))
        return pos is not None and pos[1] < committed.get((checkpoints_topic, pos[0]), 0)
    return landed


def _in_window(anchors: dict[int, tuple[int, bytes]], records: list[dict[str, Any]], first_key: str
               ) -> list[dict[str, Any]]:
    return [r for r in records
            if r["ledger_partition"] not in anchors or r[first_key] >= anchors[r["ledger_partition"]][0]]


def _recheck_views(actions: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A live store grows while it is read: re-read the actions whose summary differed
    (:data:`sinks.view_check.Recheck`)."""
    from lockgate.cli.sources import open_source

    progress(f"re-reading {len(actions)} action(s) whose summary differed")
    source = open_source()
    try:
        return source.action_views(actions)
    finally:
        source.close()


def cmd_verify(args: argparse.Namespace) -> int:
    from lockgate.cli.sources import open_source
    from sinks.ledger_source import ClickHouseSource, committed_offsets, load_from_topics, load_replay
    from sinks.rows import EXTRACTED_COLUMNS
    from sinks.service import SinkSettings
    from sinks.view_check import check_views
    from trust.keys import Keyring
    from trust.verify import Finding, compare_copies, verify_ledger

    started = time.monotonic()
    keyring = Keyring([_public_key(None)])
    witness = load_checkpoint_file(Path(args.checkpoints)) if args.checkpoints else []
    position_key: str | None = None
    summary: list[dict[str, Any]] | None = None
    committed: dict[tuple[str, int], int] = {}
    now_us = time.time_ns() // 1000
    cutoff = now_us - parse_duration_us(args.since, "--since") if args.since else None
    if args.from_topics:
        from lockgate.cli.context import bootstrap, topics

        where = f"topics {topics().prefix}audit and {topics().prefix}checkpoints"
        progress(f"reading {where} from the beginning")
        events, stored = load_from_topics(bootstrap(), topics().prefix, progress)
        position_key = "_position"
    else:
        if args.against_topics:
            from lockgate.cli.context import bootstrap, topics

            # Before the store is read: every record below these offsets is in it by now.
            group = SinkSettings().sink_group_id
            committed = committed_offsets(bootstrap(), group, [topics().audit, topics().checkpoints])
            if not committed:
                progress(f"warning: sink group {group!r} has committed nothing on {topics().prefix}audit: "
                         "records missing from the store count as pending, not as findings "
                         "(set LOCKGATE_SINK_GROUP_ID to the sink's group)")
        source = open_source(progress)
        where = source.description
        try:
            stored = source.checkpoints()
            if cutoff is not None and isinstance(source, ClickHouseSource):
                anchors0 = since_anchors(stored, cutoff, keyring)
                events = source.events_from({p: a[0] for p, a in anchors0.items()}, columns=True)
            else:
                events = source.events(columns=True)
            summary = source.summary_rows()
        finally:
            source.close()
        if events and all("_position" in e for e in events):
            position_key = "_position"  # the store keeps each row's audit-topic offset
    anchors: dict[int, tuple[int, bytes]] = {}
    all_cps = stored + witness
    if cutoff is not None:
        anchors = since_anchors(all_cps, cutoff, keyring)
        events = _in_window(anchors, events, "sequence")
        all_cps = _in_window(anchors, all_cps, "first_sequence")
    progress(f"verifying {len(events)} events and {len(all_cps)} checkpoints from {where}")
    found: list[Finding] = verify_ledger(events, all_cps, keyring, position_key=position_key, anchors=anchors)
    report: dict[str, Any] = {}
    if summary is not None:
        progress("re-deriving every reader-facing column and summary row from the chained payloads")
        views = check_views(events, summary, complete=cutoff is None, recheck=_recheck_views)
        found.extend(views.findings)
        report["views"] = {"rows": views.rows, "summary_rows": views.summary_rows, "rechecked": views.rechecked}
    if args.against_topics:
        from lockgate.cli.context import bootstrap, topics

        progress(f"reading topics {topics().prefix}audit and {topics().prefix}checkpoints to compare")
        replay = load_replay(bootstrap(), topics().prefix, progress)
        copies = compare_copies(
            events, _in_window(anchors, replay.events, "sequence"),
            stored_checkpoints=_in_window(anchors, stored, "first_sequence"),
            replay_checkpoints=_in_window(anchors, replay.checkpoints, "first_sequence"),
            landed=_landed(committed, topics().audit, topics().checkpoints, replay.checkpoint_positions),
        )
        found.extend(copies.findings)
        report["topics"] = {"records": copies.records, "pending": copies.pending,
                            "sink_group": SinkSettings().sink_group_id}
    found.sort(key=Finding.sort_key)
    findings = [_finding_json(f) for f in found]
    findings += [{"table": None, "column": None, "stored": None, "ledger": None, **w}
                 for w in witness_findings(stored, witness)]
    partitions = sorted({e["ledger_partition"] for e in events})
    report = {
        "ok": not findings, "source": where, "events": len(events),
        "checkpoints": len(stored), "witness_checkpoints": len(witness),
        "partitions": partitions, **report,
        "findings": findings, "seconds": round(time.monotonic() - started, 3),
    }
    if args.json:
        emit_json(report)
    else:
        for f in findings:
            print(f"{f['kind']:<26} partition {f['partition']} sequence {f['sequence']} "
                  f"event {f['event_id'] or '-'}: {f['message']}")
        verdict = "OK" if not findings else f"{len(findings)} finding(s)"
        checked = ""
        if "views" in report:
            checked += (f"; views: {report['views']['rows']} rows x {len(EXTRACTED_COLUMNS)} columns, "
                        f"{report['views']['summary_rows']} summary rows")
        if "topics" in report:
            checked += f"; topics: {report['topics']['records']} records compared"
            if report["topics"]["pending"]:
                checked += f" ({report['topics']['pending']} not yet landed, not compared)"
        print(f"{verdict}: {len(events)} events in {len(partitions)} partition(s), "
              f"{len(stored)} checkpoints, from {where}{checked}")
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
Verify the audit ledger and what people read of it:

  chain        recompute every event's hash and each partition's chain;
  checkpoints  check every checkpoint's Ed25519 signature (processor key from
               $LOCKGATE_HOME/keys/processor.pub.pem), its Merkle root and head;
  enforcement  every committed outcome had a validly signed allow verdict;
  views        re-derive what readers see from the chained payloads and compare:
               every derived column of audit_events (payload_schema, decode_error,
               correlation_id, actor_id, actor_roles, service, type, resource,
               attributes, sql, change_json, before_json, after_json, decision, basis,
               rule_ids, rule_effects, rule_modes, rule_errors, policy_name,
               policy_version, reason, outcome_status, error_type, error_message,
               proposed_at, decided_at, outcome_at, eval_latency_us, processor_id,
               key_id) with the function the sink derives them with, and every
               action_summary row (what `audit query`, the API list, the dashboard and
               /api/stats read) with the same fold per tenant, day and action.
               Not with --from-topics (topics have no views).
  topics       with --against-topics, compare the store with the replay topics
               (read_committed) record by record and checkpoint by checkpoint: a record
               missing from the store (below the sink's committed offset), extra in it,
               or differing in a field. This is what catches a tail rewritten after the
               newest checkpoint, which is a valid chain on its own.

The ledger is read from ClickHouse directly when no sink owns the embedded directory,
else through the running sink's API (an all-tenant token is created for the run and
revoked after it; the API streams the stored rows, columns and summary, and the
comparison runs here; actions whose summary differs are read again before they are
reported, as a running sink keeps inserting). --from-topics verifies the replay topics
instead (from the beginning to the high watermark). With --since, views are checked for the events in
the window, the summary for actions proposed in it.

Each finding names its kind, ledger partition, sequence and event id; view and topic
findings also the action, table, column, stored value and ledger value (--json: "table",
"column", "stored", "ledger"). Kinds:
modified_record, deleted_record, inserted_record, reordered_records, truncated_tail,
forged_checkpoint, altered_checkpoint, forged_verdict, undecodable_payload,
commit_without_allow, verdict_after_commit, verdict_for_other_action,
embedded_verdict_missing, embedded_verdict_forged, embedded_verdict_mismatch,
altered_view (a derived column of audit_events), altered_summary (a column of an
action_summary row), inserted_summary (a summary row no ledger event explains),
missing_summary (ledger events with no summary row), store_differs_from_topics (with
--against-topics), and with --checkpoints: witness_checkpoint_missing,
witness_checkpoint_differs.
Progress goes to stderr."""

_VERIFY_EPILOG = """\
examples:
  lockgate verify
  lockgate verify --since 24h --json
  lockgate checkpoints export witness.jsonl   # keep this copy somewhere else
  lockgate verify --checkpoints witness.jsonl
  lockgate verify --against-topics            # the store against the replay topics
  lockgate verify --from-topics

exit status:
  0  no findings
  1  findings (printed; with --json under "findings")
  2  an error: no key, ClickHouse, the sink or Kafka unreachable, bad arguments"""

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
    where = p.add_mutually_exclusive_group()
    where.add_argument("--from-topics", action="store_true", help="read the replay topics instead of ClickHouse")
    where.add_argument("--against-topics", action="store_true",
                       help="also compare the store with the replay topics, record by record")
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

