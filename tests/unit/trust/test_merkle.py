from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trust.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# RFC 6962 test vectors as published with the Certificate Transparency reference code
# (the eight leaves below; roots of the first n leaves; two audit paths in the 8-leaf tree).
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
PATH_0_OF_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]
PATH_5_OF_8 = [
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
]


def _reference_mth(d: list[bytes]) -> bytes:
    """RFC 6962 §2.1, recursively, as written."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _reference_mth(d[:k]) + _reference_mth(d[k:])).digest()


def _reference_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*_reference_path(m, d[:k]), _reference_mth(d[k:])]
    return [*_reference_path(m - k, d[k:]), _reference_mth(d[:k])]


def test_empty_tree_is_sha256_of_empty_string() -> None:
    assert merkle_root([]) == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("n", range(1, 9))
def test_rfc6962_known_roots(n: int) -> None:
    assert merkle_root(LEAVES[:n]).hex() == ROOTS[n - 1]


def test_rfc6962_known_audit_paths() -> None:
    assert [h.hex() for h in inclusion_proof(LEAVES, 0)] == PATH_0_OF_8
    assert [h.hex() for h in inclusion_proof(LEAVES, 5)] == PATH_5_OF_8
    root = bytes.fromhex(ROOTS[7])
    for i in (0, 5):
        assert verify_inclusion(LEAVES[i], i, 8, inclusion_proof(LEAVES, i), root)


def test_domain_separation() -> None:
    a, b = b"a" * 32, b"b" * 32
    assert leaf_hash(a) == hashlib.sha256(b"\x00" + a).digest()
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    # A two-leaf tree's root is not the leaf hash of the concatenated leaf hashes.
    assert merkle_root([a, b]) != leaf_hash(leaf_hash(a) + leaf_hash(b))


leaf_lists = st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=70)


@settings(max_examples=150, deadline=None)
@given(leaf_lists)
def test_root_and_every_path_match_the_recursive_definition(leaves: list[bytes]) -> None:
    root = merkle_root(leaves)
    assert root == _reference_mth(leaves)
    for i in range(len(leaves)):
        path = inclusion_proof(leaves, i)
        assert path == _reference_path(i, leaves)
        assert verify_inclusion(leaves[i], i, len(leaves), path, root)


@settings(max_examples=150, deadline=None)
@given(leaf_lists, st.data())
def test_any_flipped_byte_fails(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    i = data.draw(st.integers(0, n - 1))
    root = merkle_root(leaves)
    path = inclusion_proof(leaves, i)
    bit = 1 << data.draw(st.integers(0, 7))
    # flip in the root
    pos = data.draw(st.integers(0, 31))
    bad_root = root[:pos] + bytes([root[pos] ^ bit]) + root[pos + 1 :]
    assert not verify_inclusion(leaves[i], i, n, path, bad_root)
    # flip in the leaf data (or extend an empty one)
    leaf = leaves[i]
    if leaf:
        p = data.draw(st.integers(0, len(leaf) - 1))
        bad_leaf = leaf[:p] + bytes([leaf[p] ^ bit]) + leaf[p + 1 :]
    else:
        bad_leaf = b"\x00"
    assert not verify_inclusion(bad_leaf, i, n, path, root)
    # flip in a path element
    if path:
        j = data.draw(st.integers(0, len(path) - 1))
        bad_path = list(path)
        bad_path[j] = path[j][:pos] + bytes([path[j][pos] ^ bit]) + path[j][pos + 1 :]
        assert not verify_inclusion(leaves[i], i, n, bad_path, root)
        assert not verify_inclusion(leaves[i], i, n, path[:-1], root)
    assert not verify_inclusion(leaves[i], i, n, [*path, b"\x00" * 32], root)
    # another leaf's data at this index fails (unless it is the same data). The tree
    # size is not bound by an audit path alone (identical leaves give identical paths
    # in trees of 3 and 4), which is why proofs take it from the signed checkpoint.
    if n > 1 and leaves[(i + 1) % n] != leaves[i]:
        assert not verify_inclusion(leaves[(i + 1) % n], i, n, path, root)


@pytest.mark.parametrize(("index", "size"), [(-1, 4), (4, 4), (0, 0), (True, 2), ("0", 2)])
def test_verify_never_raises_on_nonsense(index: object, size: object) -> None:
    root = merkle_root(LEAVES[:4])
    assert not verify_inclusion(LEAVES[0], index, size, [], root)  # type: ignore[arg-type]
    assert not verify_inclusion(None, 0, 4, [], root)  # type: ignore[arg-type]
    assert not verify_inclusion(LEAVES[0], 0, 4, [b"short"], root)
    assert not verify_inclusion(LEAVES[0], 0, 4, ["str"], root)  # type: ignore[list-item]


def test_inclusion_proof_rejects_out_of_range_index() -> None:
    with pytest.raises(IndexError):
        inclusion_proof(LEAVES, 8)
    with pytest.raises(IndexError):
        inclusion_proof([], 0)


def test_one_million_leaves() -> None:
    leaves = [i.to_bytes(32, "big") for i in range(1_000_000)]
    root = merkle_root(leaves)
    path = inclusion_proof(leaves, 765_432)
    assert len(path) == 20
    assert verify_inclusion(leaves[765_432], 765_432, len(leaves), path, root)


# --- consistency proofs (RFC 6962 §2.1.2 / RFC 9162 §2.1.4) ---------------------------

# Consistency proofs in the same 8-leaf tree, as published with the CT reference code.
CONSISTENCY_VECTORS = [
    (1, 8, PATH_0_OF_8),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


def _reference_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """RFC 6962 §2.1.2 SUBPROOF, recursively, as written."""
    n = len(d)
    if m == n:
        return [] if b else [_reference_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*_reference_subproof(m, d[:k], b), _reference_mth(d[k:])]
    return [*_reference_subproof(m - k, d[k:], False), _reference_mth(d[:k])]


@pytest.mark.parametrize(("m", "n", "expected"), CONSISTENCY_VECTORS)
def test_rfc6962_known_consistency_proofs(m: int, n: int, expected: list[str]) -> None:
    proof = consistency_proof(LEAVES[:n], m)
    assert [h.hex() for h in proof] == expected
    assert verify_consistency(m, n, bytes.fromhex(ROOTS[m - 1]), bytes.fromhex(ROOTS[n - 1]), proof)


@settings(max_examples=100, deadline=None)
@given(leaf_lists, st.data())
def test_consistency_matches_the_recursive_definition_and_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    m = data.draw(st.integers(1, n))
    proof = consistency_proof(leaves, m)
    assert proof == (_reference_subproof(m, leaves, True) if m < n else [])
    old, new = merkle_root(leaves[:m]), merkle_root(leaves)
    assert verify_consistency(m, n, old, new, proof)
    if m < n:
        # any flipped bit, a dropped or an extra hash, or a swapped root fails
        j = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[j] = bytes([proof[j][0] ^ 1]) + proof[j][1:]
        assert not verify_consistency(m, n, old, new, bad)
        assert not verify_consistency(m, n, old, new, proof[:-1])
        assert not verify_consistency(m, n, old, new, [*proof, bytes(32)])
        assert not verify_consistency(m, n, new, old, proof)
        # (The sizes are not bound by a proof alone — identical leaves give identical proofs
        # for trees of 3 and 4 — which is why both sizes come from signed checkpoints.)


def test_a_forked_tree_is_not_consistent() -> None:
    """The same sizes, one leaf changed before the old size: no proof makes them consistent."""
    leaves = [bytes([i]) * 32 for i in range(13)]
    forked = list(leaves)
    forked[2] = b"\xff" * 32
    old_root = merkle_root(leaves[:7])
    forked_root = merkle_root(forked)
    assert not verify_consistency(7, 13, old_root, forked_root, consistency_proof(forked, 7))
    assert not verify_consistency(7, 13, old_root, forked_root, consistency_proof(leaves, 7))


def test_consistency_edge_sizes() -> None:
    root = merkle_root(LEAVES)
    assert consistency_proof(LEAVES, 8) == []
    assert verify_consistency(8, 8, root, root, [])
    assert not verify_consistency(8, 8, root, ROOTS[0].encode(), [])
    assert not verify_consistency(8, 8, root, root, [root])  # equal sizes take an empty proof
    assert consistency_proof(LEAVES, 0) == []
    assert verify_consistency(0, 8, EMPTY_ROOT, root, [])
    assert not verify_consistency(0, 8, root, root, [])  # size 0 has the empty root
    assert not verify_consistency(0, 8, EMPTY_ROOT, root, [root])
    assert not verify_consistency(8, 7, root, root, [])  # a smaller new tree: a rollback
    with pytest.raises(ValueError, match="old size"):
        consistency_proof(LEAVES, 9)


@pytest.mark.parametrize("bad", [None, [b"short"], ["str"], [1]])
def test_verify_consistency_never_raises(bad: object) -> None:
    assert not verify_consistency(2, 5, bytes(32), bytes(32), bad)  # type: ignore[arg-type]
    assert not verify_consistency("2", 5, bytes(32), bytes(32), [])  # type: ignore[arg-type]
    assert not verify_consistency(True, 5, bytes(32), bytes(32), [bytes(32)])


@settings(max_examples=40, deadline=None)
@given(leaf_lists)
def test_tree_levels_answer_every_prefix_root_and_proof(leaves: list[bytes]) -> None:
    from trust.merkle import TreeLevels

    tree = TreeLevels(leaves)
    n = len(leaves)
    assert tree.root(0) == EMPTY_ROOT
    for size in range(1, n + 1):
        assert tree.root(size) == _reference_mth(leaves[:size])
        for m in range(size + 1):
            assert tree.consistency_proof(m, size) == (_reference_subproof(m, leaves[:size], True)
                                                       if 0 < m < size else [])
