"""RFC 9162 Merkle trees (spec §5): agreement with the recursive definition, proof laws."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import MerkleProofError
from protocol.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_hashes,
    verify_consistency,
    verify_inclusion,
)


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, literally."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def leaves_of(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") for i in range(n)]


def flip(b: bytes, i: int) -> bytes:
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1 :]


@pytest.mark.parametrize("n", [*range(0, 34), 63, 64, 65, 127, 128, 129, 1000])
def test_root_matches_recursive_definition(n: int) -> None:
    assert merkle_root(leaves_of(n)) == mth(leaves_of(n))


def test_empty_tree_and_domain_separation() -> None:
    assert merkle_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert leaf_hash(b"x") != node_hash(b"x"[:0], b"x")


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 200), data=st.data())
def test_inclusion_proofs_verify_and_any_changed_byte_fails(n: int, data: st.DataObject) -> None:
    hs = [leaf_hash(x) for x in leaves_of(n)]
    root = root_from_hashes(hs)
    i = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(i, hs)
    verify_inclusion(hs[i], i, n, proof, root)
    with pytest.raises(MerkleProofError):
        verify_inclusion(flip(hs[i], data.draw(st.integers(0, 31))), i, n, proof, root)
    with pytest.raises(MerkleProofError):
        verify_inclusion(hs[i], i, n, proof, flip(root, data.draw(st.integers(0, 31))))
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:j], flip(proof[j], data.draw(st.integers(0, 31))), *proof[j + 1 :]]
        with pytest.raises(MerkleProofError):
            verify_inclusion(hs[i], i, n, bad, root)
        with pytest.raises(MerkleProofError):
            verify_inclusion(hs[i], i, n, proof[:-1], root)
    with pytest.raises(MerkleProofError):
        verify_inclusion(hs[i], i, n, [*proof, root], root)
    if n > 1:
        other = data.draw(st.integers(0, n - 1).filter(lambda k: k != i))
        with pytest.raises(MerkleProofError):
            verify_inclusion(hs[i], other, n, proof, root)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 200), data=st.data())
def test_consistency_proofs_verify_and_any_changed_byte_fails(n: int, data: st.DataObject) -> None:
    hs = [leaf_hash(x) for x in leaves_of(n)]
    m = data.draw(st.integers(0, n))
    old, new = root_from_hashes(hs[:m]), root_from_hashes(hs)
    proof = consistency_proof(m, hs)
    verify_consistency(m, n, proof, old, new)
    if 0 < m < n:
        b = data.draw(st.integers(0, 31))
        with pytest.raises(MerkleProofError):
            verify_consistency(m, n, proof, flip(old, b), new)
        with pytest.raises(MerkleProofError):
            verify_consistency(m, n, proof, old, flip(new, b))
        j = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:j], flip(proof[j], b), *proof[j + 1 :]]
        with pytest.raises(MerkleProofError):
            verify_consistency(m, n, bad, old, new)
        with pytest.raises(MerkleProofError):
            verify_consistency(m, n, proof[:-1], old, new)
        # A rewritten history (one old leaf changed) cannot be proven consistent.
        rewritten = [flip(hs[0], 0), *hs[1:]]
        with pytest.raises(MerkleProofError):
            verify_consistency(m, n, consistency_proof(m, rewritten), old, root_from_hashes(rewritten))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((b"\x00" * 32, 5, 5, [], EMPTY_ROOT), "outside a tree of size 5"),
        ((b"\x00" * 32, 0, 2, [b"short"], EMPTY_ROOT), "must be 32 bytes"),
        ((b"\x00" * 32, 0, 2, [], EMPTY_ROOT), "shorter than the tree is deep"),
    ],
    ids=["index_out_of_range", "short_hash", "empty_proof"],
)
def test_inclusion_rejections(args: tuple[bytes, int, int, list[bytes], bytes], message: str) -> None:
    with pytest.raises(MerkleProofError, match=message):
        verify_inclusion(*args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((5, 4, [], EMPTY_ROOT, EMPTY_ROOT), "larger than new size"),
        ((4, 4, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT), "must be empty"),
        ((4, 4, [], EMPTY_ROOT, leaf_hash(b"")), "the log was rewritten"),
        ((0, 4, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT), "from the empty tree must be empty"),
        ((3, 4, [], EMPTY_ROOT, EMPTY_ROOT), "consistency proof is empty"),
    ],
    ids=["old_bigger", "equal_sizes_nonempty", "equal_sizes_rewritten", "from_empty_nonempty", "empty_proof"],
)
def test_consistency_rejections(args: tuple[int, int, list[bytes], bytes, bytes], message: str) -> None:
    with pytest.raises(MerkleProofError, match=message):
        verify_consistency(*args)
