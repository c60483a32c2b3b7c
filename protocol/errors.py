"""One error hierarchy for the protocol layer, in families by whose fault an error is.

- :class:`PeerDataError`: the data came from someone else and is wrong (bad signature,
  broken chain, malformed statement). Never our bug; refuse it with a reason.
- :class:`ConfigurationError`: local configuration or usage is wrong (missing key file,
  bad passphrase, inconsistent roster draft).
- :class:`TransportError`: talking to a peer failed (used by ``node``).
- :class:`InternalError`: Tripwire itself went wrong (a bug).

Each family fixes the exit code (3 bad data, 2 configuration/usage, 4 transport, 1 other)
and the HTTP status (422, 500, 502, 500) of its errors, which a class may refine.

Every error carries a stable machine ``code`` (used in RFC 9457 problem JSON and in
negative test vectors) and a human message; :meth:`TripwireError.diagnostics` renders
both for people.
"""

from __future__ import annotations


class TripwireError(Exception):
    """Base class of every error Tripwire raises on purpose.

    Each class fixes a stable machine ``code``, the process ``exit_code`` and the HTTP
    ``http_status`` of its family, and a ``remediation`` (what the person reading the error
    can do about it); an instance may name a more precise remediation. The cause chain
    (``raise ... from e``) is kept and shown by :meth:`diagnostics` with ``verbose``.
    """

    code: str = "tripwire-error"
    exit_code: int = 1
    """Process exit status of a CLI command that fails with this error."""
    http_status: int = 500
    """HTTP status of a node response that fails with this error."""
    remediation: str = ""
    """What to do about it, in one sentence (empty: nothing general to say)."""

    def __init__(self, message: str, *, code: str | None = None, remediation: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if remediation is not None:
            self.remediation = remediation

    def causes(self) -> list[BaseException]:
        """The chain of causes (``__cause__``, else ``__context__``), nearest first."""
        out: list[BaseException] = []
        e: BaseException | None = self.__cause__ or (None if self.__suppress_context__ else self.__context__)
        while e is not None and len(out) < 16 and e not in out:
            out.append(e)
            e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
        return out

    def diagnostics(self, *, verbose: bool = False) -> str:
        """A human-readable explanation: the message with its machine code, then what to do,
        then (``verbose``) the cause chain."""
        lines = [f"{self.message} [{self.code}]"]
        if self.remediation:
            lines.append(f"  what to do: {self.remediation}")
        if verbose:
            for c in self.causes():
                text = c.diagnostics() if isinstance(c, TripwireError) else f"{type(c).__name__}: {c}"
                lines.append(f"  caused by: {text.splitlines()[0]}")
        return "\n".join(lines)


class InternalError(TripwireError):
    """Tripwire itself went wrong (a bug): nothing the caller sent or configured is at fault."""

    code = "internal"
    exit_code = 1
    http_status = 500
    remediation = "this is a bug in Tripwire: report it with the message above (run with --verbose for its causes)"


# --- someone else's data is wrong -------------------------------------------------------


class PeerDataError(TripwireError):
    """Data received from a peer, a file or a user is invalid."""

    code = "invalid-data"
    exit_code = 3
    http_status = 422
    remediation = "the data was refused and nothing was changed; get a correct copy from whoever produced it"


class CanonicalFormError(PeerDataError):
    """Payload bytes are not the RFC 8785 canonical form of a JSON object."""

    code = "non-canonical"


class FloatInSignedDataError(CanonicalFormError):
    """Signed data contains a float (spec: decimal strings only)."""

    code = "float-in-signed-data"


class SchemaError(PeerDataError):
    """A statement or body does not match its schema."""

    code = "schema"


class NumericDomainError(SchemaError):
    """A decimal in signed data is well-formed but outside its field's numeric domain."""

    code = "numeric-domain"


class OversizeError(PeerDataError):
    """An input exceeds a size, depth or count limit."""

    code = "oversize"


class EnvelopeError(PeerDataError):
    """A DSSE envelope is malformed (type, base64, structure)."""

    code = "bad-envelope"


class SignatureError(PeerDataError):
    """No signature verifies under a key trusted for the signer."""

    code = "bad-signature"


class UnknownKeyError(SignatureError):
    """A signature's key is not listed for that lab in the roster."""

    code = "unknown-key"


class UnknownLabError(PeerDataError):
    """The statement names a lab that the roster does not list."""

    code = "unknown-lab"


class WrongNetworkError(PeerDataError):
    """The statement belongs to another network (different genesis roster)."""

    code = "wrong-network"


class FeedError(PeerDataError):
    """A feed entry breaks the per-lab chain rules."""

    code = "feed"


class SeqGapError(FeedError):
    """Entry seq is beyond last+1 (held as out-of-order, or refused if the hold is full)."""

    code = "seq-gap"


class PrevMismatchError(FeedError):
    """Entry's ``prev`` is not the id of the lab's entry at seq-1."""

    code = "prev-mismatch"


class EquivocationError(FeedError):
    """Two validly signed entries of one lab share a seq with different ids."""

    code = "equivocation"
    http_status = 409
    remediation = "nothing to do locally: the proof is kept and shown to every member; the lab's feed is frozen at the fork"

    def __init__(self, message: str, proof: object | None = None) -> None:
        super().__init__(message)
        self.proof = proof


class ForkedFeedError(FeedError):
    """The lab's feed is frozen past a proven fork; nothing more is accepted from it."""

    code = "feed-forked"
    http_status = 409


class HoldFullError(FeedError):
    """The bounded out-of-order hold is full."""

    code = "hold-full"


class FeedTimeError(FeedError):
    """An entry's ``issued_at`` is before its predecessor's: a feed's time never goes back."""

    code = "feed-time"


class FutureDatedError(FeedError):
    """An entry's ``issued_at`` is further ahead of the verifier's clock than the allowed
    skew; it is not kept, and will be offered again by sync once its time has come."""

    code = "future-dated"


class MerkleProofError(PeerDataError):
    """A Merkle inclusion or consistency proof does not verify."""

    code = "bad-merkle-proof"


class RosterError(PeerDataError):
    """A roster or roster update breaks the roster rules."""

    code = "roster"


class RosterThresholdError(RosterError):
    """Too few distinct trusted signers for the roster (old or new threshold)."""

    code = "roster-threshold"


class RosterVersionError(RosterError):
    """A roster update is not exactly version N+1."""

    code = "roster-version"


class RosterRollbackError(RosterVersionError):
    """A roster at or below the current version was offered (rollback/replay)."""

    code = "roster-rollback"


class RosterExpiredError(RosterError):
    """The roster has expired: reads continue, new votes are refused."""

    code = "roster-expired"


class RevokedError(PeerDataError):
    """A feed position after a roster pin whose version removed the lab or its signing key.

    Spec §7.7: once a roster version pins a lab's feed at seq p, positions after p are
    governed by that version whatever date they claim, so a removed lab or a rotated-out
    key cannot sign them by back-dating.
    """

    code = "revoked"


class PinMismatchError(FeedError):
    """An entry sits at a seq a roster version pins, but is not the pinned entry (spec §7.7)."""

    code = "pin-mismatch"


class PauseStateNonceError(PeerDataError):
    """Spec §6.9: The statement answers another challenge than the one sent (a replayed answer)."""

    code = "pause-state-nonce"


class PauseStateStaleError(PeerDataError):
    """The statement's ``issued_at`` is outside the verifier's freshness window."""

    code = "pause-state-stale"


class PauseStateSignerError(SignatureError):
    """The statement speaks for another node than the one the verifier trusts."""

    code = "pause-state-signer"


class QuorumError(PeerDataError):
    """Votes, proposals or certificates break the quorum rules."""

    code = "quorum"


class ObserverVoteError(QuorumError):
    """An observer (regulator) tried to vote; observers can never vote."""

    code = "observer-vote"


class InsufficientQuorumError(QuorumError):
    """The counted vote weight is below the required quorum."""

    code = "insufficient-quorum"


class PolicyError(PeerDataError):
    """A threshold policy or its application is invalid."""

    code = "policy"


# --- our own configuration or usage is wrong --------------------------------------------


class ConfigurationError(TripwireError):
    """Local configuration, key material or command usage is wrong."""

    code = "configuration"
    exit_code = 2
    http_status = 500
    remediation = "fix the file, setting or option named above and run the command again"


class KeyFileError(ConfigurationError):
    """A key file cannot be read, decrypted or is not an Ed25519 key."""

    code = "key-file"


# --- talking to peers failed -------------------------------------------------------------


class TransportError(TripwireError):
    """A network exchange with a peer failed (timeouts, refused connections, 5xx)."""

    code = "transport"
    exit_code = 4
    http_status = 502
    remediation = "check that the peer is up and reachable at the URL named above; sync retries on its own"
