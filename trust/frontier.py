"""The Merkle frontier (compact range) of a growing log: its root in O(log n) state.

A ledger writer must sign the RFC 6962 root over *every* leaf of its partition, yet it
cannot keep millions of leaves in memory or re-hash them per checkpoint. It does not need
to: the tree over leaves ``[0, n)`` is determined by the roots of the perfect subtrees
that tile it — one per set bit of ``n``, largest (leftmost) first. That list is the
*frontier*; it has at most 64 entries.

Append (leaf hash ``h``, size ``n``): while the lowest bit of ``n`` is set, merge the
rightmost frontier node into ``h`` (``h = node_hash(node, h)``) and shift ``n``; then push
``h``. Amortised one node hash per leaf (plus the leaf hash); worst case ``log2 n``.

Root: fold the frontier from the right, ``r = node_hash(left, r)``. This equals
:func:`trust.merkle.merkle_root` over all leaves because RFC 6962 splits at the largest
power of two below ``n`` — exactly the leftmost frontier node.

A frontier is *self-authenticating*: whoever holds a signed root for size ``n`` can check
a frontier handed to them by recomputing that root. With the frontier at ``m`` and the
leaves ``[m, n)``, :meth:`CompactRange.consistency_proof` proves ``m`` to ``n`` without
the older leaves (every node of that proof lies wholly inside one of the two; see
:mod:`trust.merkle`).

Serialized form (:meth:`CompactRange.to_bytes`): the size as 8 bytes big-endian, then the
frontier nodes, 32 bytes each, leftmost first. A writer keeps it in its state store next
to the chain head, so a restart resumes the root without re-reading the partition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from trust.merkle import EMPTY_ROOT, consistency_proof_with, merkle_root

__all__ = ["CompactRange"]

_sha256 = hashlib.sha256
_HASH_LEN = 32


class CompactRange:
    """The frontier of leaves ``[0, size)``: append leaves, read the root at any time."""

    __slots__ = ("_nodes", "_size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        """A frontier of ``size`` leaves from its nodes (leftmost first); ``ValueError`` if
        the node count is not the number of set bits of ``size`` or a node is not 32 bytes."""
        if type(size) is not int or not 0 <= size < 1 << 64:
            raise ValueError(f"a frontier size is an integer in 0 .. 2^64 - 1, not {size!r}")
        node_list = [bytes(n) for n in nodes]
        if len(node_list) != size.bit_count() or any(len(n) != _HASH_LEN for n in node_list):
            raise ValueError(
                f"a frontier of {size} leaves has {size.bit_count()} nodes of 32 bytes, "
                f"got {len(node_list)}"
            )
        self._size = size
        self._nodes = node_list

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> CompactRange:
        """The frontier over ``leaves`` (leaf data: the 32-byte event hashes)."""
        out = cls()
        for leaf in leaves:
            out.append(leaf)
        return out

    @property
    def size(self) -> int:
        return self._size

    @property
    def nodes(self) -> tuple[bytes, ...]:
        """The perfect-subtree roots tiling ``[0, size)``, leftmost (largest) first."""
        return tuple(self._nodes)

    def ranges(self) -> list[tuple[int, int]]:
        """The leaf range ``[lo, hi)`` each node of :attr:`nodes` covers."""
        out: list[tuple[int, int]] = []
        lo = 0
        for bit in range(self._size.bit_length() - 1, -1, -1):
            if self._size >> bit & 1:
                out.append((lo, lo + (1 << bit)))
                lo += 1 << bit
        return out

    def append(self, leaf_data: bytes) -> None:
        """Add one leaf (its data; the leaf hash ``SHA-256(0x00 || data)`` is taken here)."""
        self.append_leaf_hash(_sha256(b"\x00" + leaf_data).digest())

    def append_leaf_hash(self, leaf_hash: bytes) -> None:
        """Add one leaf by its RFC 6962 leaf hash."""
        h = leaf_hash
        n = self._size
        nodes = self._nodes
        while n & 1:
            h = _sha256(b"\x01" + nodes.pop() + h).digest()
            n >>= 1
        nodes.append(h)
        self._size += 1

    def root(self) -> bytes:
        """RFC 6962 MTH of leaves ``[0, size)``; :data:`~trust.merkle.EMPTY_ROOT` when empty."""
        if not self._nodes:
            return EMPTY_ROOT
        nodes = self._nodes
        r = nodes[-1]
        for left in reversed(nodes[:-1]):
            r = _sha256(b"\x01" + left + r).digest()
        return r

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._nodes)

    def consistency_proof(self, new_leaves: Sequence[bytes]) -> list[bytes]:
        """RFC 6962 consistency proof from this frontier's size ``m`` to ``m + len(new_leaves)``.

        ``new_leaves`` are the leaf data of ``[m, n)``. Costs about ``2 (n - m)`` hashes.
        """
        m = self._size
        by_range = dict(zip(self.ranges(), self._nodes, strict=True))

        def subtree(lo: int, hi: int) -> bytes:
            if hi <= m:
                node = by_range.get((lo, hi))
                if node is None:  # unreachable for a proof from m (trust.merkle docstring)
                    raise ValueError(f"subtree [{lo}, {hi}) is not a frontier node of size {m}")
                return node
            if lo < m:
                raise ValueError(f"subtree [{lo}, {hi}) straddles the old size {m}")
            return merkle_root(new_leaves[lo - m : hi - m])

        return consistency_proof_with(m, m + len(new_leaves), subtree)

    def to_bytes(self) -> bytes:
        """``size`` (8 bytes big-endian) followed by the nodes, leftmost first."""
        return self._size.to_bytes(8, "big") + b"".join(self._nodes)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRange:
        """Inverse of :meth:`to_bytes`; ``ValueError`` on any other length or shape."""
        data = bytes(data)
        if len(data) < 8 or (len(data) - 8) % _HASH_LEN:
            raise ValueError("a serialized frontier is 8 bytes of size and 32-byte nodes")
        size = int.from_bytes(data[:8], "big")
        nodes = [data[i : i + _HASH_LEN] for i in range(8, len(data), _HASH_LEN)]
        return cls(size, nodes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CompactRange) and (self._size, self._nodes) == (other._size, other._nodes)

    def __hash__(self) -> int:
        return hash((self._size, tuple(self._nodes)))

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()[:16]}…)"
