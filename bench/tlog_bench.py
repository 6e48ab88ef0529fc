"""Whole-log checkpoints at scale: incremental root per append, consistency proofs over 1M
leaves, signing and checking notes, a witness decision — each next to a baseline measured
in the same run (a bare SHA-256; a full recomputation of the root).

    .venv/bin/python bench/tlog_bench.py [N]          # N leaves, default 1,000,000
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable

from trust.cosignature import CosignatureV1Signer
from trust.frontier import CompactRange
from trust.keys import SigningKey
from trust.merkle import consistency_proof, merkle_root, verify_consistency
from trust.partition_log import PartitionLog
from trust.tlog import log_verifier, open_log_checkpoint
from trust.tlog_witness import add_checkpoint, add_checkpoint_body, parse_add_checkpoint


def best_us(fn: Callable[[], object], n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def seconds(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    leaves = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]
    rows: list[tuple[str, str]] = []

    sha = hashlib.sha256
    rows.append(("baseline: one SHA-256 of 65 bytes", f"{best_us(lambda: sha(b'x' * 65).digest(), 200_000):.2f} µs"))

    t_fold, tree = seconds(lambda: CompactRange.from_leaves(leaves))
    assert isinstance(tree, CompactRange)
    rows.append((f"frontier over {n:,} leaves (append only)", f"{t_fold:.2f} s = {t_fold / n * 1e6:.2f} µs/append"))
    extra = [sha(b"more" + i.to_bytes(8, "big")).digest() for i in range(20_000)]
    grow = tree.copy()
    it = iter(extra)

    def append_and_root() -> bytes:
        grow.append(next(it))
        return grow.root()

    rows.append((f"append + root at size ~{n:,} (what the writer pays per event)",
                 f"{best_us(append_and_root, 5_000, repeat=4):.2f} µs"))
    t_full, root = seconds(lambda: merkle_root(leaves))
    rows.append(("baseline: full root recomputation (merkle_root)", f"{t_full:.2f} s"))
    assert root == tree.root()

    for old in (n // 3, n - 1000, 1):
        t_gen, proof = seconds(lambda old=old: consistency_proof(leaves, old))  # type: ignore[misc]
        assert isinstance(proof, list)
        old_root = merkle_root(leaves[:old])
        t_ver = best_us(lambda p=proof, o=old, r=old_root: verify_consistency(o, n, r, root, p), 200)  # type: ignore[misc]
        rows.append((f"consistency proof {old:,} -> {n:,} from all leaves",
                     f"{len(proof)} hashes ({32 * len(proof)} B), generate {t_gen:.2f} s, verify {t_ver:.0f} µs"))
    old = n - 1000
    frontier = CompactRange.from_leaves(leaves[:old])
    t_front, proof = seconds(lambda: frontier.consistency_proof(leaves[old:]))
    rows.append((f"consistency proof {old:,} -> {n:,} from the frontier + 1,000 new leaves (writer)",
                 f"{t_front * 1e3:.2f} ms"))

    key = SigningKey.generate()
    log = PartitionLog(0, tree=tree, head=leaves[-1])
    cp = log.checkpoint(key, "bench", 1)
    sign_us = best_us(lambda: log.checkpoint(key, "bench", 1), 2000)
    rows.append(("sign a whole-log checkpoint note", f"{sign_us:.0f} µs"))
    rows.append(("open + check a checkpoint record",
                 f"{best_us(lambda: open_log_checkpoint(cp, key.public()), 2000):.0f} µs"))
    witness = CosignatureV1Signer("witness.example/w1", SigningKey.generate())
    body = add_checkpoint_body(0, [], bytes(cp["signature"]).decode())
    keys = [log_verifier(log.origin, key.public())]
    rows.append(("witness: parse + decide + cosign one add-checkpoint",
                 f"{best_us(lambda: add_checkpoint(parse_add_checkpoint(body), keys, None, witness, 5), 2000):.0f} µs"))

    # verify: every whole-log checkpoint (one per 1,000 events) against the stored hashes
    from trust.keys import Keyring
    from trust.verify.checkpoints import verify_checkpoints
    from trust.verify.findings import PartitionState

    every = 1000
    replay = PartitionLog(0)
    cps = []
    for leaf in leaves:
        replay.append(leaf)
        if replay.size % every == 0:
            cps.append(replay.checkpoint(key, "bench", replay.size))
            replay.forget_before(replay.size)
    state = PartitionState(0, 0, [{"sequence": i, "hash": h} for i, h in enumerate(leaves)])
    t_verify, findings = seconds(lambda: verify_checkpoints(cps, {0: state}, Keyring([key.public()])))
    assert findings == [], findings
    rows.append((f"verify {len(cps):,} whole-log checkpoints over {n:,} stored events",
                 f"{t_verify:.2f} s = {n / t_verify:,.0f} events/s"))

    width = max(len(r[0]) for r in rows)
    for what, value in rows:
        print(f"{what:<{width}}  {value}")


if __name__ == "__main__":
    main()
