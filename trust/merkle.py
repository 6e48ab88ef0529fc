"""Merkle tree hashes and inclusion proofs, exactly as RFC 6962 §2.1 / RFC 9162 §2.1.

An auditor can re-implement this module from this docstring alone. ``HASH`` is SHA-256.

Leaf and node hashes (the 0x00 / 0x01 prefixes keep a leaf from ever being read as a node)::

    leaf_hash(d)    = HASH(0x00 || d)
    node_hash(l, r) = HASH(0x01 || l || r)

Merkle Tree Hash of the list ``D[0:n]``::

    MTH({})     = HASH()                               (SHA-256 of the empty string)
    MTH({d0})   = leaf_hash(d0)
    MTH(D[0:n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))  with k the largest power of two < n

Computed bottom-up, level by level: pair neighbours left to right; an odd last node moves
up a level unchanged. This gives the same value as the recursive definition (the largest
power of two split means the unpaired node is always the right-most subtree).

Inclusion proof (audit path) of leaf ``m`` in ``D[0:n]``, RFC 6962 §2.1.1::

    PATH(m, {d0})  = {}
    PATH(m, D[n])  = PATH(m, D[0:k]) : MTH(D[k:n])   if m < k
                   = PATH(m - k, D[k:n]) : MTH(D[0:k]) if m >= k

i.e. the sibling hashes from the leaf upwards, skipping levels where the node has no
sibling. Verification is RFC 9162 §2.1.3.2, implemented literally in
:func:`verify_inclusion`. Lockgate's leaves are the 32-byte ledger event hashes of one
checkpoint interval, in sequence order (``docs/CONTRACTS.md``).

Everything is iterative (no recursion limit) and keeps one level in memory at a time: a
root over 1,000,000 leaves is about two million SHA-256 calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "EMPTY_ROOT",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "verify_inclusion",
]

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()
"""MTH of the empty list: SHA-256 of the empty string."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def _leaf_level(leaves: Sequence[bytes]) -> list[bytes]:
    sha = _sha256
    return [sha(b"\x00" + d).digest() for d in leaves]


def _next_level(level: list[bytes]) -> list[bytes]:
    sha = _sha256
    n = len(level)
    up = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, n - 1, 2)]
    if n % 2:
        up.append(level[-1])
    return up


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over ``leaves`` (the leaf *data*; leaf hashes are computed here)."""
    if not leaves:
        return EMPTY_ROOT
    level = _leaf_level(leaves)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of ``leaves[index]``: sibling hashes from the leaf level upwards.

    Raises :class:`IndexError` if ``index`` is outside ``0 .. len(leaves) - 1``.
    """
    n = len(leaves)
    if not 0 <= index < n:
        raise IndexError(f"leaf index {index} is outside a tree of {n} leaves")
    path: list[bytes] = []
    level = _leaf_level(leaves)
    i = index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        level = _next_level(level)
        i >>= 1
    return path


def verify_inclusion(
    leaf_data: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` show ``leaf_data`` at ``index`` in a tree of
    ``tree_size`` leaves with Merkle root ``root``? Never raises on bad input."""
    try:
        return _verify_inclusion(bytes(leaf_data), index, tree_size, proof, bytes(root))
    except (TypeError, ValueError):
        return False


def _verify_inclusion(
    leaf_data: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    if type(index) is not int or type(tree_size) is not int or not 0 <= index < tree_size:
        return False
    fn = index
    sn = tree_size - 1
    r = leaf_hash(leaf_data)
    for p in proof:
        if not isinstance(p, bytes) or len(p) != 32 or sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
