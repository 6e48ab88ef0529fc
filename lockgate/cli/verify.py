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


def _witness_keys(paths: list[str] | None) -> list[Any]:
    """Witness verifier keys (``name+keyid+base64(0x04||key)``), one or more per file."""
    from trust.cosignature import CosignatureV1Verifier
    from trust.errors import KeyInvalid

    out: list[Any] = []
    for path in paths or ():
        try:
            lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
        except OSError as exc:
            raise ConfigError(f"cannot read witness key file {path}: {exc}") from exc
        if not lines:
            raise ConfigError(f"witness key file {path} is empty; it holds the witness's verifier key")
        for line in lines:
            try:
                out.append(CosignatureV1Verifier.from_vkey(line))
            except KeyInvalid as exc:
                raise ConfigError(f"{path}: {exc} (`lockgate witness vkey` prints a witness's key)") from exc
    return out


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


DEFAULT_VERDICT_GRACE = "30s"
"""``--verdict-grace``'s default: far beyond the milliseconds ``audit-intake`` usually trails
``outcomes`` by, short enough that a verdict that never lands is named within a minute."""


def _verdict_grace_us(raw: str) -> int:
    """``--verdict-grace``: a duration, or ``0`` (strict: no outcome waits for its verdict)."""
    return 0 if raw.strip() == "0" else parse_duration_us(raw, "--verdict-grace")


def _pending_json(action_ids: list[str], grace_us: int) -> dict[str, Any]:
    from trust.verify.enforcement import PENDING_LISTED

    return {"count": len(action_ids), "grace_s": grace_us / 1e6, "action_ids": action_ids[:PENDING_LISTED],
            "listed": min(len(action_ids), PENDING_LISTED)}


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


def _before_window(anchors: dict[int, tuple[int, bytes]], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records
            if r["ledger_partition"] in anchors and r["sequence"] < anchors[r["ledger_partition"]][0]]


def _verdicts_among(events: list[dict[str, Any]]) -> Callable[[list[str]], list[dict[str, Any]]]:
    """A lookup (action ids -> verdict events) over events already read in full."""
    def lookup(action_ids: list[str]) -> list[dict[str, Any]]:
        wanted = set(action_ids)
        return [e for e in events if e.get("kind") == "verdict" and e.get("action_id") in wanted]
    return lookup


def _earlier_verdicts(anchors: dict[int, tuple[int, bytes]], window: Any,
                      lookup: Callable[[list[str]], list[dict[str, Any]]]
                      ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The verdict events chained before the window for the committed outcomes in it that
    have no verdict there (``window`` is its :class:`trust.verify.DecodedLedger`), read by
    ``lookup`` (action ids -> verdict events), and what the read cost."""
    from trust.verify import unanswered_actions

    started = time.monotonic()
    wanted = unanswered_actions(window)
    found = _before_window(anchors, lookup(wanted)) if wanted else []
    if wanted:
        progress(f"read {len(found)} verdict(s) chained before the window for {len(wanted)} outcome(s) in it")
    return found, {"actions": len(wanted), "found": len(found), "seconds": round(time.monotonic() - started, 3)}


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
    from lockgate.cli.context import home, log_name
    from lockgate.cli.sources import open_source
    from sinks.ledger_source import ClickHouseSource, committed_offsets, load_from_topics, load_replay
    from sinks.rows import EXTRACTED_COLUMNS
    from sinks.service import SinkSettings
    from sinks.view_check import check_views
    from trust.checkpoints import NOTE_FORMAT, checkpoint_format
    from trust.keys import Keyring
    from trust.reviewers import ReviewerRegistry
    from trust.verify import (
        BindingStats,
        CoverageRule,
        DecodedLedger,
        Finding,
        OutcomeRule,
        PendingVerdicts,
        VerdictRule,
        compare_copies,
        verify_ledger,
        verify_reviews,
    )

    started = time.monotonic()
    verdict_grace_us = _verdict_grace_us(args.verdict_grace)
    interval_s = _checkpoint_interval_s(args.checkpoint_interval)
    keyring = Keyring([_public_key(None)])
    witnesses = _witness_keys(args.witness_key)
    expected_log = args.log_name or log_name()
    witness = load_checkpoint_file(Path(args.checkpoints)) if args.checkpoints else []
    position_key: str | None = None
    summary: list[dict[str, Any]] | None = None
    decoded: DecodedLedger | None = None
    earlier: tuple[list[dict[str, Any]], dict[str, Any]] | None = None
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
                # The anchors computed below, so the window read here is the one verified.
                anchors0 = since_anchors(stored + witness, cutoff, keyring)
                events = source.events_from({p: a[0] for p, a in anchors0.items()}, columns=True)
                decoded = DecodedLedger.build(events)
                earlier = _earlier_verdicts(anchors0, decoded, source.verdict_events)
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
        read = events  # the window's earlier verdicts are picked from here when all was read
        events = _in_window(anchors, events, "sequence")
        all_cps = [c for c in all_cps  # whole-log checkpoints start at 0 and stay
                   if c["ledger_partition"] not in anchors or checkpoint_format(c) == NOTE_FORMAT
                   or c["first_sequence"] >= anchors[c["ledger_partition"]][0]]
    progress(f"verifying {len(events)} events and {len(all_cps)} checkpoints from {where}")
    coverage = CoverageRule(int(interval_s * 1e6), now_us)
    outcome_rule = (OutcomeRule(parse_duration_us(args.outcome_grace, "--outcome-grace"), now_us)
                    if args.outcome_grace else None)
    if decoded is None:
        decoded = DecodedLedger.build(events)
    if cutoff is not None and earlier is None:  # every event was read: pick them from there
        earlier = _earlier_verdicts(anchors, decoded, _verdicts_among(read))
    bindings = BindingStats()
    pending = PendingVerdicts()
    found: list[Finding] = verify_ledger(events, all_cps, keyring, position_key=position_key, anchors=anchors,
                                         coverage=coverage, outcomes=outcome_rule, witnesses=witnesses,
                                         log_name=expected_log, decoded=decoded, bindings=bindings,
                                         verdicts=VerdictRule(verdict_grace_us, now_us), pending=pending,
                                         context_verdicts=earlier[0] if earlier else ())
    found.extend(verify_reviews(events, keyring, ReviewerRegistry(Home(home()).keys)))
    report: dict[str, Any] = {"bindings": {
        "bound_verdicts": bindings.bound_verdicts, "unbound_verdicts": bindings.unbound_verdicts,
        "bound_outcomes": bindings.bound_outcomes, "unbound_outcomes": bindings.unbound_outcomes},
        "pending_verdicts": _pending_json(pending.action_ids, verdict_grace_us)}
    if earlier is not None:
        report["earlier_verdicts"] = earlier[1]
    if args.decisions:
        from processors.policy.reevaluate import Reevaluator
        from trust.verify.decisions import recheck_decisions

        progress("re-evaluating every recorded proposal under its recorded policy version")
        rechecked = recheck_decisions(decoded, Reevaluator())
        found.extend(rechecked.findings)
        report["decisions"] = {"checked": rechecked.checked, "skipped": rechecked.skipped,
                               "seconds": round(rechecked.seconds, 3)}
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
        "witnesses": [w.name for w in witnesses], "log_name": expected_log,
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
        b = report["bindings"]
        checked += f"; bindings: {b['bound_verdicts']} verdicts, {b['bound_outcomes']} outcomes"
        if b["unbound_verdicts"] or b["unbound_outcomes"]:
            checked += (f" ({b['unbound_verdicts']} verdicts, {b['unbound_outcomes']} outcomes signed before "
                        "schema v2: checked by id only)")
        if report.get("earlier_verdicts", {}).get("actions"):
            e = report["earlier_verdicts"]
            checked += (f"; {e['actions']} outcome(s) judged against verdicts from before the window "
                        f"({e['found']} found)")
        if "decisions" in report:
            d = report["decisions"]
            skipped = ", ".join(f"{n} {why}" for why, n in sorted(d["skipped"].items()))
            checked += f"; decisions: {d['checked']} re-evaluated" + (f" ({skipped} not)" if skipped else "")
        print(f"{verdict}: {len(events)} events in {len(partitions)} partition(s), "
              f"{len(stored)} checkpoints, from {where}{checked}")
        if pending.action_ids:
            listed = ", ".join(pending.action_ids[:3]) + (", …" if len(pending.action_ids) > 3 else "")
            print(f"pending: {len(pending.action_ids)} committed outcome(s) whose verdict has not reached the "
                  f"ledger yet (chained less than {verdict_grace_us / 1e6:g}s ago: {listed}); not judged, "
                  "a later run will judge them")
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


def _newest_log_checkpoints(cps: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    from trust.checkpoints import NOTE_FORMAT, checkpoint_format

    newest: dict[int, dict[str, Any]] = {}
    for c in cps:
        if checkpoint_format(c) != NOTE_FORMAT:
            continue
        cur = newest.get(c["ledger_partition"])
        if cur is None or c["last_sequence"] > cur["last_sequence"]:
            newest[c["ledger_partition"]] = c
    return newest


def _leaves(source: Any, partition: int, size: int) -> list[bytes]:
    """The hashes of events ``0 .. size - 1`` of ``partition``, in order; ConfigError on a gap."""
    by_seq = {e["sequence"]: e["hash"] for e in source.interval(partition, 0, size - 1)}
    missing = next((s for s in range(size) if s not in by_seq), None)
    if missing is not None:
        raise ConfigError(f"partition {partition} lacks stored event {missing}; run `lockgate verify`")
    return [by_seq[s] for s in range(size)]


def cmd_prove(args: argparse.Namespace) -> int:
    from lockgate.cli.sources import open_source
    from trust.checkpoints import INTERVAL_FORMAT, checkpoint_format, verify_checkpoint
    from trust.keys import Keyring
    from trust.proofs import ProofError, build_proof

    if args.consistency:
        return _prove_consistency(args)
    if not args.action_id:
        raise ConfigError("give ACTION_ID (inclusion proofs) or --consistency OLD NEW --partition P")
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
        newest = _newest_log_checkpoints(cps)
        whole_logs: dict[int, list[dict[str, Any]]] = {}
        for ev in events:
            part = ev["ledger_partition"]
            log_cp = newest.get(part)
            if log_cp is not None and ev["sequence"] <= log_cp["last_sequence"]:
                # The newest whole-log checkpoint: the one witnesses cosigned most recently.
                if part not in whole_logs:
                    whole_logs[part] = source.interval(part, 0, log_cp["last_sequence"])
                cp, covering_events = log_cp, whole_logs[part]
            else:
                # Not under a whole-log checkpoint yet: the smallest legacy interval covering it.
                covering = sorted(
                    (c for c in cps if c["ledger_partition"] == part and checkpoint_format(c) == INTERVAL_FORMAT
                     and c["first_sequence"] <= ev["sequence"] <= c["last_sequence"]),
                    key=lambda c: c["last_sequence"] - c["first_sequence"],
                )
                if not covering:
                    unproven.append({"event_id": ev["event_id"], "sequence": ev["sequence"],
                                     "reason": "no signed checkpoint covers it yet; try again later"})
                    continue
                cp = covering[0]
                covering_events = source.interval(part, cp["first_sequence"], cp["last_sequence"])
            try:
                proofs.append(build_proof(ev, covering_events, cp))
            except ProofError as exc:
                unproven.append({"event_id": ev["event_id"], "sequence": ev["sequence"], "reason": str(exc)})
    finally:
        source.close()
    bundle = {"action_id": args.action_id, "proofs": proofs, "unproven": unproven}
    _write(args.out, bundle, f"wrote {len(proofs)} proof(s)")
    return EXIT_OK if proofs and not unproven else EXIT_NEGATIVE


def _write(out: str | None, doc: dict[str, Any], what: str) -> None:
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if out:
        Path(out).write_text(text, encoding="utf-8")
        progress(f"{what} to {out}")
    else:
        sys.stdout.write(text)


def _prove_consistency(args: argparse.Namespace) -> int:
    from lockgate.cli.sources import open_source
    from trust.checkpoints import NOTE_FORMAT, checkpoint_format, verify_checkpoint
    from trust.consistency import build_consistency_file
    from trust.keys import Keyring
    from trust.proofs import ProofError

    old_size, new_size = args.consistency
    if args.partition is None:
        raise ConfigError("--consistency needs --partition P (each partition is a log of its own)")
    if not 1 <= old_size <= new_size:
        raise ConfigError(f"--consistency OLD NEW needs 1 <= OLD <= NEW, got {old_size} {new_size}")
    keyring = Keyring([_public_key(None)])
    source = open_source(progress)
    try:
        cps = [c for c in source.checkpoints()
               if c["ledger_partition"] == args.partition and checkpoint_format(c) == NOTE_FORMAT
               and verify_checkpoint(c, keyring)]
        by_size: dict[int, dict[str, Any]] = {}
        for c in sorted(cps, key=lambda c: len(c["signature"])):  # the copy with most cosignatures last
            by_size[c["last_sequence"] + 1] = c
        for size in (old_size, new_size):
            if size not in by_size:
                sizes = sorted(by_size)
                raise ConfigError(
                    f"partition {args.partition} has no signed whole-log checkpoint of size {size}; "
                    f"sizes signed: {', '.join(map(str, sizes[-10:])) or 'none'}"
                )
        leaves = _leaves(source, args.partition, new_size)
    finally:
        source.close()
    try:
        doc = build_consistency_file(leaves, by_size[old_size], by_size[new_size])
    except ProofError as exc:
        raise ConfigError(str(exc)) from exc
    _write(args.out, doc, f"wrote a consistency proof {old_size} -> {new_size} ({len(doc['proof'])} hashes)")
    return EXIT_OK


def cmd_verify_proof(args: argparse.Namespace) -> int:
    from trust.consistency import CONSISTENCY_FORMAT, verify_consistency_file
    from trust.proofs import verify_proof

    key = _public_key(Path(args.public_key) if args.public_key else None)
    witnesses = _witness_keys(args.witness_key)
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
            if isinstance(p, dict) and p.get("format") == CONSISTENCY_FORMAT:
                ok, reason = verify_consistency_file(p, key, witnesses=witnesses, log_name=args.log_name)
            else:
                ok, reason = verify_proof(p, key, witnesses=witnesses, log_name=args.log_name)
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
  coverage     no event is chained twice, and every event older than twice the
               checkpoint interval is covered by a signed checkpoint (so it can be proven);
  whole-log    whole-log checkpoints (C2SP signed notes over the root of every event of a
               partition, origin <log name>/p<N>) are checked against all stored events
               from sequence 0, and each against the next with an RFC 6962 consistency
               proof: a deleted or rewritten history signed again cannot be consistent.
               Legacy interval checkpoints are checked as they were signed. With
               --witness-key FILE (repeatable), the newest checkpoint of every partition
               must carry a valid cosignature of each witness;
  enforcement  every committed outcome had a validly signed allow verdict. An outcome
               is chained straight from the outcomes topic, its verdict through
               audit-intake, so for a moment an outcome can be in the ledger before
               its verdict: an outcome chained less than --verdict-grace ago (default
               30s) whose action has no verdict event in the ledger yet, and which
               embeds a validly signed allow, is reported as pending, not as a
               finding, and a later run judges it. Any verdict in the ledger (a block,
               a forged one) is judged at once, and so is an outcome dated more than
               60s ahead of this run's clock;
  bindings     proposal -> verdict -> outcome by hash (schema v2): each verdict's
               proposal_sha256 is the SHA-256 of the ledger's proposal for its action
               id (of the refused proposal, for a replay block), its policy_sha256 the
               SHA-256 of a policy event's payload with the same tenant, policy name and
               version, published before it; each outcome's verdict_sha256 the hash of
               its embedded verdict and of a ledger verdict. One action id, at most one
               proposal and one final (allow or block) verdict besides replay blocks.
               Records signed before v2 carry no hashes: counted as unbound, checked by id;
  decisions    with --decisions, re-evaluate every recorded proposal under the policy
               version its verdict recorded (the processor's engine, now = the verdict's
               decided_at) and report each verdict that policy would not have produced:
               what a leaked processor key signing arbitrary allows leaves behind;
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
"column", "stored", "ledger"), and so does a forged_checkpoint that is an edited copy of a
validly signed checkpoint (the fields it differs in, its values and the signed copy's), or a
whole-log copy whose head_hash is not the hash of the last event its signed root commits to
(judged where the stored chain reproduces the root; "ledger" is the chain's hash).
Every stored checkpoint record is checked; only field-for-field identical copies count once.
Kinds:
modified_record, deleted_record, inserted_record, reordered_records, truncated_tail,
forged_checkpoint, altered_checkpoint, duplicate_event, uncovered_event, forged_verdict,
undecodable_payload,
commit_without_allow, verdict_after_commit, verdict_for_other_action,
embedded_verdict_missing, embedded_verdict_forged, embedded_verdict_mismatch,
inconsistent_checkpoints, with --witness-key: missing_cosignature, forged_cosignature,
unbound_record (a v2 record with a null hash), verdict_proposal_mismatch,
verdict_policy_mismatch, outcome_verdict_mismatch, duplicate_proposal, duplicate_decision,
with --decisions: irreproducible_decision,
altered_view (a derived column of audit_events), altered_summary (a column of an
action_summary row), inserted_summary (a summary row no ledger event explains),
missing_summary (ledger events with no summary row), store_differs_from_topics (with
--against-topics), with --outcome-grace: outcome_missing (an allow older than the grace
whose outcome never reached the ledger: not tampering; the body may not have run, or the
outcome waits in a Guard's spool), with --checkpoints: witness_checkpoint_missing,
witness_checkpoint_differs; and reviews, judged with the reviewer registry
($LOCKGATE_HOME/keys/reviewers.json): review_approvals_invalid (an allow through a review
without enough valid approvals from eligible reviewers other than the requester),
approval_after_commit (an approval recorded after, or missing before, the commit),
break_glass_unreviewed (a break-glass action whose post-hoc review is not complete),
grant_invalid (an allow citing a time-boxed review grant that does not cover it: another
actor, type or tenant, a resource outside the prefix, outside the window, or a granting
review that was not approved). Progress goes to stderr."""

_VERIFY_EPILOG = """\
examples:
  lockgate verify
  lockgate verify --since 24h --json
  lockgate verify --witness-key w1.vkey --witness-key w2.vkey
  lockgate checkpoints export witness.jsonl   # keep this copy somewhere else
  lockgate verify --checkpoints witness.jsonl
  lockgate verify --against-topics            # the store against the replay topics
  lockgate verify --from-topics
  lockgate verify --decisions                 # re-evaluate every decision under its policy

--since starts a partition after the newest legacy interval checkpoint older than the
cutoff (their signature covers the chain head); whole-log checkpoints are then checked
for signatures, cosignatures and truncation, not for their roots (a root covers every
event from 0). A partition with only whole-log checkpoints is verified in full.
A committed outcome in the window whose verdict was chained before it is judged against
that verdict, read by action id from the store (through a sink's API and with
--from-topics, which read every row anyway, picked from those): a valid allow decided before the commit
answers it without being reported; a forged one is a forged_verdict where it is stored; a
verdict deleted from the store is still commit_without_allow. The summary line says "N
outcome(s) judged against verdicts from before the window (M found)" (--json:
"earlier_verdicts": {"actions", "found", "seconds"}).

Pending outcomes (see enforcement) are printed as one line with their count (--json:
"pending_verdicts": {"count", "grace_s", "action_ids" (the first 100), "listed"}) and do
not change the exit status.

exit status:
  0  no findings
  1  findings (printed; with --json under "findings")
  2  an error: no key, ClickHouse, the sink or Kafka unreachable, bad arguments"""

_EXPORT_DESC = """\
Write every stored checkpoint to FILE ("-" for stdout) as JSON lines, one checkpoint
per line, sorted keys:

  {"format": "lockgate.checkpoint", "checkpoint_id": "p0@64", "ledger_partition": 0,
   "first_sequence": 0, "last_sequence": 63, "created_at": <int microseconds UTC>,
   "processor_id": "...", "key_id": "<16 hex>", "head_hash": "<64 hex>",
   "merkle_root": "<64 hex>", "signature": "<hex>",
   "signature_format": "tlog-checkpoint/v1"}

Bytes are lowercase hex; a whole-log checkpoint's signature is its signed note (UTF-8),
a legacy interval checkpoint's ("interval/v1") 64 bytes of Ed25519. Keep the file
outside the ledger's trust domain (a witness copy); `lockgate verify --checkpoints FILE`
then also reports stored checkpoints that differ from it or are missing, and checks the
chain against the witness copies."""

_PROVE_DESC = """\
Build inclusion proofs for every audit event of ACTION_ID (the proposal, its verdict,
its outcome): each proof carries the event and the RFC 6962 audit path from the event's
hash to a signed root. An event under a whole-log checkpoint is proven against the
partition's newest one (version 2: a C2SP tlog-proof with the checkpoint note and its
witness cosignatures); an older event only under a legacy interval checkpoint, against
that (version 1). Anyone with the processor's public key checks it offline
(`lockgate verify-proof`).

Output: {"action_id": ..., "proofs": [<lockgate.inclusion-proof>...],
"unproven": [{"event_id", "sequence", "reason"}...]} (format: trust/proofs.py).
Events not yet covered by a checkpoint are listed under "unproven".

With --consistency OLD NEW --partition P instead of ACTION_ID: a consistency proof that
partition P's signed whole-log checkpoint of NEW events extends the one of OLD events
(format: trust/consistency.py). Both sizes must be signed checkpoints; the leaf hashes
are read from the ledger."""

_VERIFY_PROOF_DESC = """\
Check a proof file offline: a single lockgate.inclusion-proof object, the output of
`lockgate prove` (every proof in it must verify), or a lockgate.consistency-proof. Needs
only the processor's public key (default $LOCKGATE_HOME/keys/processor.pub.pem); a log's
verifier key for partition P is derived from it as <log name>/pP+<key id>+base64(0x01||key)
(docs/auditor.md). With --witness-key FILE (repeatable) each witness must have cosigned
the checkpoint (for a consistency proof: the new one)."""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("verify", help="verify the audit ledger's chain, checkpoints and verdicts",
                       formatter_class=fmt, description=_VERIFY_DESC, epilog=_VERIFY_EPILOG)
    p.add_argument("--since", metavar="DURATION",
                   help="only events after the newest checkpoint older than DURATION (90s, 30m, 24h, 7d); "
                        "outcomes in the window are judged against their verdicts from before it")
    p.add_argument("--checkpoints", metavar="FILE", help="witness copy from `lockgate checkpoints export`")
    p.add_argument("--witness-key", metavar="FILE", action="append",
                   help="a witness's verifier key file (`lockgate witness vkey`); repeatable")
    p.add_argument("--log-name", metavar="NAME",
                   help="the log checkpoint origins must name (default LOCKGATE_LOG_NAME or lockgate.example/ledger)")
    p.add_argument("--checkpoint-interval", metavar="SECONDS", type=float,
                   help="the processor's checkpoint interval: events older than twice this that no "
                        "checkpoint covers are uncovered_event (default: the processor's setting, "
                        "LOCKGATE_CHECKPOINT_INTERVAL_S, else 5)")
    p.add_argument("--outcome-grace", metavar="DURATION",
                   help="also report allowed actions with no outcome after DURATION (e.g. 1h, 2d) as "
                        "outcome_missing; off by default, as check-only actions (submit, Guard.check) "
                        "never have one")
    p.add_argument("--verdict-grace", metavar="DURATION", default=DEFAULT_VERDICT_GRACE,
                   help="how long a committed outcome may wait for its verdict event (still on its way "
                        "through audit-intake) before it is commit_without_allow; 0 = judge every outcome "
                        f"now (default {DEFAULT_VERDICT_GRACE})")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--from-topics", action="store_true", help="read the replay topics instead of ClickHouse")
    where.add_argument("--against-topics", action="store_true",
                       help="also compare the store with the replay topics, record by record")
    p.add_argument("--decisions", action="store_true",
                   help="also re-evaluate every recorded proposal under its recorded policy version and report "
                        "verdicts that policy would not have produced (irreproducible_decision)")
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

    p = sub.add_parser("prove", help="inclusion proofs for one action, or a consistency proof",
                       formatter_class=fmt, description=_PROVE_DESC,
                       epilog="examples:\n  lockgate prove 6f1c...-action-id --out proof.json\n"
                       "  lockgate prove --consistency 1000 5000 --partition 2 --out c.json\n"
                       "  lockgate verify-proof proof.json\n\n"
                       "exit status:\n  0  every event proven (or the consistency proof written)\n"
                       "  1  some events not provable (see \"unproven\")\n"
                       "  2  an error (no such action or checkpoint, storage unreachable)")
    p.add_argument("action_id", metavar="ACTION_ID", nargs="?")
    p.add_argument("--consistency", metavar=("OLD", "NEW"), nargs=2, type=int,
                   help="prove the checkpoint of NEW events extends the one of OLD events")
    p.add_argument("--partition", metavar="P", type=int, help="the partition of --consistency")
    p.add_argument("--out", metavar="FILE", help="write the proofs here instead of stdout")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_prove)

    p = sub.add_parser("verify-proof", help="check an inclusion or consistency proof offline",
                       formatter_class=fmt, description=_VERIFY_PROOF_DESC,
                       epilog="examples:\n  lockgate verify-proof proof.json\n"
                       "  lockgate verify-proof proof.json --public-key processor.pub.pem --witness-key w1.vkey\n"
                       "  lockgate verify-proof c.json --public-key processor.pub.pem\n\n"
                       "exit status:\n  0  valid\n  1  invalid (the reason is printed)\n  2  an error")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--public-key", metavar="PEM", help="processor public key (PEM)")
    p.add_argument("--witness-key", metavar="FILE", action="append",
                   help="require this witness's cosignature (verifier key file); repeatable")
    p.add_argument("--log-name", metavar="NAME", help="require checkpoints of this log (origin <NAME>/p<N>)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_verify_proof)
