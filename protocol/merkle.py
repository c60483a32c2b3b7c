"""RFC 9162 (RFC 6962 hashing) Merkle trees: roots, inclusion and consistency proofs.

Used for ``items_root`` in eval results (a commitment to per-item records that allows
later selective disclosure) and for signed checkpoints of a node's log of accepted
entries (spec §5.5). Leaf hash ``SHA-256(0x00 || leaf)``, node hash
``SHA-256(0x01 || left || right)``, split at the largest power of two below n, empty
tree = SHA-256 of the empty string.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from protocol.canonical import canonical_bytes, parse_canonical
from protocol.entries import Hex64, LabId, Model, Timestamp, _schema_error
from protocol.envelope import CHECKPOINT_PAYLOAD_TYPE, Envelope, sign_payload, verify_signatures
from protocol.errors import (
    EnvelopeError,
    MerkleProofError,
    SignatureError,
    UnknownLabError,
    WrongNetworkError,
)
from protocol.keys import SigningKey
from protocol.roster import RosterChain, _trusted_for

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_hashes(hashes: Sequence[bytes]) -> bytes:
    """Root over already-hashed leaves, bottom-up (same result as the recursive MTH)."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    # Pairing left to right and promoting an odd last node gives exactly RFC 9162's
    # split-at-largest-power-of-two tree, without recursion.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over raw leaves."""
    return root_from_hashes([leaf_hash(x) for x in leaves])


def inclusion_proof(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) for leaf ``index`` given the leaf hashes (RFC 9162 §2.1.3.1)."""
    n = len(hashes)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} out of range for tree size {n}")
    return _path(index, list(hashes))


def _path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n <= 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(m, d[:k]), root_from_hashes(d[k:])]
    return [*_path(m - k, d[k:]), root_from_hashes(d[:k])]


def verify_inclusion(leaf_hash_: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Verify an inclusion proof (RFC 9162 §2.1.3.2); raise :class:`MerkleProofError`."""
    if not 0 <= index < size:
        raise MerkleProofError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn = index, size - 1
    r = leaf_hash_
    for p in proof:
        if len(p) != 32:
            raise MerkleProofError("proof hashes must be 32 bytes")
        if sn == 0:
            raise MerkleProofError("inclusion proof is longer than the tree is deep")
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleProofError("inclusion proof is shorter than the tree is deep")
    if r != root:
        raise MerkleProofError("inclusion proof does not lead to the expected root")


def consistency_proof(old_size: int, hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) that the tree of ``old_size`` is a prefix (RFC 9162 §2.1.4.1)."""
    n = len(hashes)
    if not 0 <= old_size <= n:
        raise ValueError(f"old size {old_size} out of range for tree size {n}")
    if old_size == 0 or old_size == n:
        return []
    return _subproof(old_size, list(hashes), True)


def _subproof(m: int, d: list[bytes], complete: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if complete else [root_from_hashes(d)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, d[:k], complete), root_from_hashes(d[k:])]
    return [*_subproof(m - k, d[k:], False), root_from_hashes(d[:k])]


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Verify a consistency proof (RFC 9162 §2.1.4.2); raise :class:`MerkleProofError`."""
    if not 0 <= old_size <= new_size:
        raise MerkleProofError(f"old size {old_size} is larger than new size {new_size}")
    if any(len(p) != 32 for p in proof):
        raise MerkleProofError("proof hashes must be 32 bytes")
    if old_size == new_size:
        if proof:
            raise MerkleProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise MerkleProofError("equal sizes but different roots: the log was rewritten")
        return
    if old_size == 0:
        if proof:
            raise MerkleProofError("a proof from the empty tree must be empty")
        return
    if not proof:
        raise MerkleProofError("consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # power of two: the old root is itself a node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MerkleProofError("consistency proof is longer than expected")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleProofError("consistency proof is shorter than expected")
    if fr != old_root:
        raise MerkleProofError("consistency proof does not reproduce the old root")
    if sr != new_root:
        raise MerkleProofError("consistency proof does not reproduce the new root")


# --- signed checkpoints (spec §5.5) ------------------------------------------------------


class Checkpoint(Model):
    """A node's signed commitment to the first ``size`` entries of its accepted-entry log."""

    protocol: Literal["tripwire/1"]
    network: Hex64
    """Network id (genesis roster id)."""
    node: LabId
    """Lab id of the node whose log this is; that lab's roster key signs the checkpoint."""
    size: Annotated[int, Field(ge=0, le=2**53 - 1)]
    """Number of leaves (accepted entries) committed to."""
    root: Hex64
    """RFC 9162 root over the log's leaves: leaf i = the ASCII bytes of the i-th entry_id (hex)."""
    issued_at: Timestamp

    @property
    def root_bytes(self) -> bytes:
        return bytes.fromhex(self.root)


def log_leaf(entry_id: str) -> bytes:
    """The leaf of a node's log for one accepted entry: the ASCII bytes of its hex entry_id."""
    return entry_id.encode("ascii")


def sign_checkpoint(checkpoint: Checkpoint, key: SigningKey) -> Envelope:
    """Sign a checkpoint with the lab's roster key."""
    return sign_payload(
        canonical_bytes(checkpoint.model_dump(mode="json")), CHECKPOINT_PAYLOAD_TYPE, [key]
    )


def verify_checkpoint(envelope: Envelope, chain: RosterChain) -> Checkpoint:
    """Verify a checkpoint envelope from the roster chain alone (spec §5.5); raise on failure."""
    if envelope.payloadType != CHECKPOINT_PAYLOAD_TYPE:
        raise EnvelopeError(
            f"payloadType {envelope.payloadType!r} is not a checkpoint ({CHECKPOINT_PAYLOAD_TYPE})"
        )
    payload = envelope.payload_bytes()
    obj = parse_canonical(payload)
    try:
        cp = Checkpoint.model_validate(obj)
    except ValidationError as e:
        raise _schema_error(e, "checkpoint") from e
    if cp.network != chain.network_id:
        raise WrongNetworkError(
            f"checkpoint is for network {cp.network[:16]}…, this node is on {chain.network_id[:16]}…"
        )
    # A rotated-out key still proves checkpoints it signed while its roster was current.
    for vr in _trusted_for(chain, cp.node, cp.issued_at, None):
        keys = vr.lab_keys(cp.node)
        if keys and verify_signatures(envelope, payload, keys):
            return cp
    if chain.current.roster.lab(cp.node) is None:
        raise UnknownLabError(f"checkpoint names node {cp.node!r}, which the roster does not list as a lab")
    raise SignatureError(f"checkpoint signature does not verify under lab {cp.node!r}'s roster key")


def verify_checkpoint_consistency(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Check that ``new`` extends ``old`` (same log, nothing rewritten); raise on failure."""
    if (old.network, old.node) != (new.network, new.node):
        raise MerkleProofError("checkpoints are of different logs")
    verify_consistency(old.size, new.size, proof, old.root_bytes, new.root_bytes)
