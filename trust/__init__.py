"""The trust model: everything that makes the audit log proof, with no I/O of its own.

Modules (the one place that owns each concern):

    canonical     the canonical bytes every hash and signature covers
    keys          Ed25519 keys, key files (0600), keyrings with expiry
    signatures    record signatures: sign_record, verify_record
    registry      the service registry: which producer key is whose
    chain         the per-partition hash chain (one function for the hashed bytes)
    merkle        RFC 6962 Merkle trees and inclusion proofs
    checkpoints   signed checkpoints over chain intervals
    proofs        inclusion-proof files an auditor checks offline
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
    "errors",
    "history",
    "keys",
    "merkle",
    "proofs",
    "registry",
    "signatures",
    "source",
    "verify",
    "witness",
]
