"""Protocol benchmark: entry verification and Merkle proofs against bare Ed25519 verify.

Every number is reported as a ratio to a baseline measured in the same run: bare
``cryptography`` Ed25519 verification of the same PAE bytes. Timings are the minimum
over repeats, with the benchmarks interleaved round by round, because the machines this
runs on are noisy and shared::

    python bench/protocol.py [--n 2000] [--repeats 7]

Full entry verification = envelope decode (base64, strict JSON, canonical check,
statement schema) + network/lab/roster key lookup + signature + feed chain rule.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol.entries import decode_entry  # noqa: E402
from protocol.envelope import Envelope, pae  # noqa: E402
from protocol.feed import FeedWriter, Head, check_append  # noqa: E402
from protocol.merkle import inclusion_proof, leaf_hash, root_from_hashes, verify_inclusion  # noqa: E402
from protocol.roster import verify_entry  # noqa: E402


def _world() -> Any:
    spec = importlib.util.spec_from_file_location("tripwire_vectors_generate", ROOT / "specs/vectors/generate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod, mod.build_world()


def build(n: int) -> dict[str, Callable[[], None]]:
    gen, w = _world()
    chain = w.chain1
    pub = chain.current.lab_keys("gamma")[gen.key("gamma-1").keyid]._key
    benches: dict[str, Callable[[], None]] = {}
    vote = w.statement("gamma-1")["body"]  # small: the pause path's common entry
    result = w.statement("alpha-1")["body"]  # ~1.3 KB eval_result with nested models
    for label, kind, body in (("vote", "vote", vote), ("eval_result", "eval_result", result)):
        start = Head(1, w.eid("gamma-1"))
        writer = FeedWriter(w.network, "gamma", gen.key("gamma-1"), start)
        envs = [writer.append(kind, body, gen.at(days=2, minutes=i))[0] for i in range(n)]
        pae_sigs = [(pae(e.payloadType, e.payload_bytes()), base64.b64decode(e.signatures[0].sig)) for e in envs]

        def bare(pae_sigs: list[tuple[bytes, bytes]] = pae_sigs) -> None:
            for msg, sig in pae_sigs:
                pub.verify(sig, msg)

        def decode(envs: list[Envelope] = envs) -> None:
            for e in envs:
                decode_entry(e)

        def full(envs: list[Envelope] = envs, start: Head = start) -> None:
            head = start
            for e in envs:
                ve = verify_entry(e, chain)
                check_append(ve, head, None)
                head = Head(ve.seq, ve.entry_id)

        benches[f"{label}:bare_verify"] = bare
        benches[f"{label}:decode_entry"] = decode
        benches[f"{label}:full_verify"] = full

    size = 1 << 16
    hs = [leaf_hash(i.to_bytes(8, "big")) for i in range(size)]
    root = root_from_hashes(hs)
    # Building a proof is O(size); 32 distinct leaves, cycled, keep the setup short.
    distinct = [(hs[i], i, inclusion_proof(i, hs)) for i in ((k * 7919) % size for k in range(32))]
    proofs = [distinct[k % len(distinct)] for k in range(n)]

    def merkle() -> None:
        for h, i, p in proofs:
            verify_inclusion(h, i, size, p, root)

    benches["merkle:inclusion_2^16"] = merkle
    return benches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="operations per timed round")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved rounds; the minimum counts")
    args = ap.parse_args()
    benches = build(args.n)
    best = dict.fromkeys(benches, float("inf"))
    for _ in range(args.repeats):
        for name, fn in benches.items():  # interleaved: noise hits every bench alike
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    print(f"n={args.n} repeats={args.repeats} (min of interleaved repeats); ratios are to the "
          "bare Ed25519 verify of the same entries' PAE bytes (merkle: of the vote entries)")
    print(f"{'benchmark':<26}{'ops/s':>12}{'vs bare verify':>16}")
    for name, secs in best.items():
        group = name.split(":")[0] if not name.startswith("merkle") else "vote"
        rate = args.n / secs
        base = args.n / best[f"{group}:bare_verify"]
        print(f"{name:<26}{rate:>12,.0f}{rate / base:>15.2f}x")


if __name__ == "__main__":
    main()
