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
:func:`verify_inclusion`. Lockgate's leaves are the 32-byte ledger event hashes of a
partition in sequence order: all of them from sequence 0 for a whole-log checkpoint
(:mod:`trust.tlog`), one interval for a legacy interval checkpoint (``docs/CONTRACTS.md``).

Consistency proof between the first ``m`` and all ``n`` leaves, RFC 6962 §2.1.2::

    PROOF(m, D[n])            = SUBPROOF(m, D[n], true)          for 0 < m < n
    SUBPROOF(m, D[m], true)   = {}
    SUBPROOF(m, D[m], false)  = {MTH(D[m])}
    SUBPROOF(m, D[n], b)      = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])         if m <= k
                              = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]) if m > k

Every node of such a proof is a subtree lying wholly inside the old tree ``[0, m)`` (a
node of its compact range, see :mod:`trust.frontier`) or wholly inside the new leaves
``[m, n)``; :func:`consistency_proof_with` takes any function that can hash those
subtrees, so the same code proves from a full leaf list and from a writer's frontier.
Verification is RFC 9162 §2.1.4.2, implemented literally in :func:`verify_consistency`.

Everything is iterative (no recursion limit) and keeps one level in memory at a time: a
root over 1,000,000 leaves is about two million SHA-256 calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "SubtreeHash",
    "TreeLevels",
    "consistency_proof",
    "consistency_proof_with",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "verify_consistency",
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


SubtreeHash = Callable[[int, int], bytes]
"""``subtree(lo, hi)`` = MTH of leaves ``lo .. hi - 1``; asked only for the nodes a proof holds."""


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def consistency_proof_with(old_size: int, new_size: int, subtree: SubtreeHash) -> list[bytes]:
    """RFC 6962 §2.1.2 ``PROOF(old_size, D[new_size])``, iteratively, hashing through ``subtree``.

    Empty when ``old_size`` is 0 or equals ``new_size`` (nothing to prove; the verifier
    compares roots). Raises :class:`ValueError` unless ``0 <= old_size <= new_size``.
    """
    if type(old_size) is not int or type(new_size) is not int or not 0 <= old_size <= new_size:
        raise ValueError(f"a consistency proof needs 0 <= old size ({old_size}) <= new size ({new_size})")
    if old_size in (0, new_size):
        return []
    m, lo, size, complete = old_size, 0, new_size, True
    later: list[bytes] = []  # nodes each recursion level appends after its sub-result
    while m != size:
        k = _largest_power_of_two_below(size)
        if m <= k:
            later.append(subtree(lo + k, lo + size))
            size = k
        else:
            later.append(subtree(lo, lo + k))
            lo, m, size, complete = lo + k, m - k, size - k, False
    head = [] if complete else [subtree(lo, lo + m)]
    return head + later[::-1]


class TreeLevels:
    """Every perfect subtree's hash over a list of leaves, level by level.

    Built bottom-up in one pass (``n`` leaf hashes and ``n - 1`` node hashes, as
    :func:`merkle_root`), it then answers the root of *any* prefix size and any subtree a
    proof needs in ``O(log n)`` hashes: a subtree ``[lo, hi)`` of an RFC 6962 tree is a
    stored node when it is perfect, else the node hash of its two RFC halves. ``verify``
    reads every whole-log checkpoint's root and every consistency proof from one of these.
    Memory: about ``2n`` 32-byte hashes.
    """

    def __init__(self, leaves: Sequence[bytes]) -> None:
        sha = _sha256
        level = _leaf_level(leaves)
        self._levels = [level]
        while len(level) > 1:
            level = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
            self._levels.append(level)
        self.size = len(leaves)

    def subtree(self, lo: int, hi: int) -> bytes:
        """MTH of leaves ``lo .. hi - 1`` (``0 <= lo < hi <= size``), as an RFC 6962 subtree."""
        width = hi - lo
        if width & (width - 1) == 0 and lo % width == 0:
            return self._levels[width.bit_length() - 1][lo // width]
        k = _largest_power_of_two_below(width)
        return _sha256(b"\x01" + self.subtree(lo, lo + k) + self.subtree(lo + k, hi)).digest()

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all of them by default)."""
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ValueError(f"size {n} is outside 0 .. {self.size}")
        return self.subtree(0, n) if n else EMPTY_ROOT

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 6962 proof from ``old_size`` to ``new_size`` (default: all leaves)."""
        n = self.size if new_size is None else new_size
        if n > self.size:
            raise ValueError(f"new size {n} is beyond the {self.size} leaves")
        return consistency_proof_with(old_size, n, self.subtree)


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """The consistency proof from the first ``old_size`` leaves to all of ``leaves`` (leaf data).

    Cost: one pass over the leaves, about ``2n`` SHA-256 (:class:`TreeLevels`).
    """
    if type(old_size) is not int or not 0 <= old_size <= len(leaves):
        raise ValueError(f"a consistency proof needs 0 <= old size ({old_size}) <= new size ({len(leaves)})")
    if old_size in (0, len(leaves)):
        return []
    return TreeLevels(leaves).consistency_proof(old_size)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree ``(new_size, new_root)`` an append-only extension of
    ``(old_size, old_root)``? Never raises on bad input.

    The RFC defines the algorithm for ``0 < old_size < new_size``. Around it, as C2SP
    tlog-witness requires: equal sizes need an empty proof and equal roots; old size 0
    needs an empty proof and ``old_root`` = the empty tree's root; old > new is refused.
    """
    try:
        return _verify_consistency(old_size, new_size, bytes(old_root), bytes(new_root), proof)
    except (TypeError, ValueError):
        return False


def _verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                        proof: Sequence[bytes]) -> bool:
    if type(first) is not int or type(second) is not int or not 0 <= first <= second:
        return False
    path = list(proof)
    if not all(isinstance(p, bytes) and len(p) == 32 for p in path):
        return False
    if first == second:
        return not path and first_hash == second_hash
    if first == 0:
        return not path and first_hash == EMPTY_ROOT
    # 1. If consistency_path is an empty array, stop and fail the proof verification.
    if not path:
        return False
    # 2. If first is an exact power of 2, then prepend first_hash to the consistency_path array.
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = first - 1, second - 1
    # 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in path[1:]:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            fr = _sha256(b"\x01" + c + fr).digest()  # 1. fr = HASH(0x01 || c || fr)
            sr = _sha256(b"\x01" + c + sr).digest()  # 2. sr = HASH(0x01 || c || sr)
            # 3. If LSB(fn) is not set, right-shift both fn and sn equally until either
            #    LSB(fn) is set or fn is 0.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = _sha256(b"\x01" + sr + c).digest()  # Otherwise: sr = HASH(0x01 || sr || c)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 7. fr equals first_hash, sr equals second_hash, and sn is 0.
    return fr == first_hash and sr == second_hash and sn == 0
