"""The trust model: everything that makes the audit log proof, with no I/O of its own.

Modules (the one place that owns each concern):

    canonical     the canonical bytes every hash and signature covers
    keys          Ed25519 keys, key files (0600), keyrings with expiry
    signatures    record signatures: sign_record, verify_record
    registry      the service registry: which producer key is whose
    chain         the per-partition hash chain (one function for the hashed bytes)
    merkle        RFC 6962 Merkle trees, inclusion and consistency proofs
    frontier      the Merkle frontier: a whole log's root in O(log n) state
    note          C2SP signed notes (sign, parse, verify with several keys)
    cosignature   C2SP cosignature/v1: witness signatures on checkpoints
    tlog          whole-log checkpoints (C2SP tlog-checkpoint) and their record
    partition_log what a ledger writer keeps per partition to sign and prove them
    tlog_witness  C2SP tlog-witness add-checkpoint: the witness's decisions, the client
    tlog_proof    the C2SP tlog-proof text
    checkpoints   the Checkpoint record in either format (whole-log, legacy interval)
    proofs        inclusion-proof files an auditor checks offline
    consistency   consistency-proof files between two whole-log checkpoints
    witness       the witness file (exported checkpoints) and what it proves
    history       a resource's actions, verdicts and changes, in order
    source        the LedgerSource interface the engine reads through
    verify        the verify engine: findings, chain, checkpoints, enforcement
    errors        TrustError and its tree

It imports only ``schemas`` and the kernel (import-linter contracts in pyproject.toml):
the processor writes with it, the sink and the CLI read with it, neither owns it.
"""

__all__ = [
    "canonical",
    "chain",
    "checkpoints",
    "consistency",
    "cosignature",
    "errors",
    "frontier",
    "history",
    "keys",
    "merkle",
    "note",
    "partition_log",
    "proofs",
    "registry",
    "signatures",
    "source",
    "tlog",
    "tlog_proof",
    "tlog_witness",
    "verify",
    "witness",
]
