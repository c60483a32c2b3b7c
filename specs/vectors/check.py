"""Run every Tripwire protocol vector through ``protocol/`` (the reference verifier).

Each negative vector names a ``procedure`` (spec §11.2) and the error it must raise::

    entry               roster_chain, envelope, [now]   decode + verify one feed entry (§4.2 steps 1-6)
    feed                roster_chain, envelopes         verify a contiguous run of one lab's feed (§4.5)
    roster_chain        roster_chain, [now]             genesis, then each update in order (§7.2, §7.3)
    certificate         roster_chain, certificate       verify a pause/resume certificate (§6.5)
    equivocation_proof  roster_chain, proof             verify a portable equivocation proof (§4.4)
    merkle_inclusion    leaf_hash, index, size, proof, root               (§5.2)
    merkle_consistency  old_size, new_size, proof, old_root, new_root     (§5.3)
    checkpoint          roster_chain, envelope          verify a signed checkpoint (§5.5)
    canonical           payload_hex                     parse + require canonical bytes (§2.3)

Run ``python specs/vectors/check.py``; it exits non-zero if any vector misbehaves.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

import protocol.errors as errors  # noqa: E402
from protocol.canonical import parse_canonical, parse_time  # noqa: E402
from protocol.entries import PauseCertificateBody  # noqa: E402
from protocol.envelope import Envelope  # noqa: E402
from protocol.feed import EquivocationProof, verify_feed  # noqa: E402
from protocol.merkle import verify_checkpoint, verify_consistency, verify_inclusion  # noqa: E402
from protocol.quorum import verify_certificate  # noqa: E402
from protocol.roster import RosterChain, verify_entry  # noqa: E402


def _chain(v: dict[str, Any], *, now: bool = False) -> RosterChain:
    envs = [Envelope.parse(e) for e in v["roster_chain"]]
    chain = RosterChain.from_envelopes(envs[:1])
    when = parse_time(v["now"]) if now and "now" in v else None
    for e in envs[1:]:
        chain.apply(e, now=when)
    return chain


def _entry(v: dict[str, Any]) -> object:
    now = parse_time(v["now"]) if "now" in v else None
    return verify_entry(Envelope.parse(v["envelope"]), _chain(v), now=now)


def _hexes(xs: list[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in xs]


PROCEDURES: dict[str, Callable[[dict[str, Any]], object]] = {
    "entry": _entry,
    "feed": lambda v: verify_feed([Envelope.parse(e) for e in v["envelopes"]], _chain(v)),
    "roster_chain": lambda v: _chain(v, now=True),
    "certificate": lambda v: verify_certificate(PauseCertificateBody.model_validate(v["certificate"]), _chain(v)),
    "equivocation_proof": lambda v: EquivocationProof.parse(v["proof"]).verify(_chain(v)),
    "merkle_inclusion": lambda v: verify_inclusion(
        bytes.fromhex(v["leaf_hash"]), v["index"], v["size"], _hexes(v["proof"]), bytes.fromhex(v["root"])
    ),
    "merkle_consistency": lambda v: verify_consistency(
        v["old_size"], v["new_size"], _hexes(v["proof"]), bytes.fromhex(v["old_root"]),
        bytes.fromhex(v["new_root"]),
    ),
    "checkpoint": lambda v: verify_checkpoint(Envelope.parse(v["envelope"]), _chain(v)),
    "canonical": lambda v: parse_canonical(bytes.fromhex(v["payload_hex"])),
}


def run_negative(vector: dict[str, Any]) -> errors.TripwireError:
    """Run one negative vector; return the error it raised, or raise AssertionError."""
    expected = vector["expected"]
    cls = getattr(errors, expected["error"])
    try:
        PROCEDURES[vector["procedure"]](vector)
    except errors.TripwireError as e:
        if not isinstance(e, cls) or e.code != expected["code"] or expected["message"] not in str(e):
            raise AssertionError(
                f"{vector['name']}: expected {expected['error']}[{expected['code']}] containing "
                f"{expected['message']!r}, got {type(e).__name__}[{e.code}]: {e}"
            ) from e
        return e
    raise AssertionError(f"{vector['name']}: expected {expected['error']}, but it verified")


def main() -> int:
    failures = 0
    paths = sorted(HERE.glob("negative/*.json"))
    for path in paths:
        try:
            run_negative(json.loads(path.read_text()))
        except AssertionError as e:
            failures += 1
            print(f"FAIL {e}")
    print(f"{len(paths) - failures}/{len(paths)} negative vectors raised the expected error")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
