"""Training gate: stop training when the network pauses (spec §6.6), failing closed.

Two ways in:

- plain loops: ``gate = TrainingGate(home_or_url)``, then ``gate.check(step)`` returns a
  :class:`GateDecision`; :meth:`TrainingGate.step_hook` adapts it to the ``on_step(step,
  model)`` hook of :func:`node.evals.tinymodels.train_tiny_arithmetic` (and any loop of
  that shape);
- Hugging Face ``Trainer``: ``TripwireGateCallback(home_or_url)``, which asks the trainer to
  save a checkpoint and stop.

What the gate looks at, every ``poll_interval_s`` (between polls it repeats its last
answer, so calling it every step is cheap):

1. the node's signed pause state (spec §6.9): ``GET /v1/status/pause?nonce=<fresh random
   hex>`` (a signed request, :mod:`node.net.client`) answers a DSSE envelope signed by the
   node's lab key and bound to the nonce. The gate verifies it
   (:func:`protocol.pausestate.verify_pause_state`) against the roster it trusts (the
   home's store, a roster file, or the chain the node serves checked against a pinned
   network id) and the lab it trusts. ``paused`` stops; so does **anything it cannot
   authenticate**: a redirect (never followed), a non-200 answer, non-JSON or JSON of the
   wrong shape, a bad or missing signature, another signer, another network, a replayed
   answer (old nonce), a statement outside the freshness window;
2. with a home, the home's own store directly: a valid pause certificate not ended by a
   resume stops, and so (``stop_on_local_breach``, default on) does a verified breach of
   this lab's own results under a rule that calls for a pause, unless that trigger's
   pause was already resumed. This catches a breach before the network has voted, and
   a pause while the node's API is down. A store that cannot be read stops too;
3. the run's training plan (spec §6.12), when the gate knows its run (``run=`` with a
   model name or plan id, and :meth:`TrainingGate.set_compute`): from the local store or
   the node's signed pause state, the gate stops the run at its plan's stop point unless a
   safety case for the plan was accepted, when its compute grew past the evaluation cadence
   without a fresh signed result ("overdue evaluation"), and past the plan's compute. The
   plan is checked against the current compute at every call, also between polls;
4. fail closed (``fail_closed``, default on): when the node has not given an authenticated
   answer for longer than ``grace_s`` (connection refused, timeouts, TLS failures),
   training stops too. A gate that cannot see the network cannot promise the network has
   not paused.

:meth:`TrainingGate.check` never raises for what a peer or the store does: every failure is
a stop decision whose ``reason`` says what went wrong. A stop is final for the gate object:
training resumes only when a person restarts it (after a resume certificate, the next gate
will let it run).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from node.contracts import RosterDocument, read_answer
from node.errors import config_section_error
from protocol.canonical import parse_json_strict, utcnow
from protocol.entries import PauseProposalBody, Trigger, halt_text, pause_proposal_id
from protocol.envelope import Envelope
from protocol.errors import (
    ConfigurationError,
    PeerDataError,
    RosterVersionError,
    TransportError,
    TripwireError,
)
from protocol.pausestate import DEFAULT_MAX_SKEW_S, VerifiedPauseState, verify_pause_state
from protocol.plans import PlanRef, RunStop, plan_for, run_stop
from protocol.roster import RosterChain
from protocol.scope import Run
from protocol.scope import describe as describe_scope

if TYPE_CHECKING:
    from node.home import NodeHome
    from node.net.client import PeerClient
    from protocol.keys import SigningKey

log = logging.getLogger(__name__)

Source = Literal["node", "local", "unreachable", "unauthenticated", "cached"]

#: Path of the signed pause state (spec §6.9).
PAUSE_STATE_PATH = "/v1/status/pause"
#: Largest answer the gate reads (a pause state lists at most 256 pauses).
MAX_ANSWER_BYTES = 256 * 1024


def _certificate_ids(certs: Any) -> set[str]:
    """Certificate entry ids from a decision's details: the local store's {proposal: id} or
    the signed pause state's [{proposal_id, certificate}]."""
    if isinstance(certs, dict):
        return {c for c in certs.values() if isinstance(c, str)}
    if isinstance(certs, list):
        return {c["certificate"] for c in certs if isinstance(c, dict) and isinstance(c.get("certificate"), str)}
    return set()


class GateConfig(BaseModel):
    """``[gate]`` in node.toml (keyword arguments of :class:`TrainingGate` override it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    """Node API to poll; default: the home's own endpoint."""
    poll_interval_s: float = Field(default=2.0, ge=0, le=3600)
    """Least time between two looks at the node and the store."""
    grace_s: float = Field(default=60.0, ge=0)
    """How long the node may be unreachable before a fail-closed gate stops training."""
    fail_closed: bool = True
    """Stop when the node has been unreachable for longer than ``grace_s``."""
    check_local: bool = True
    """Also read the home's store directly (needs a home)."""
    stop_on_local_breach: bool = True
    """Stop on this lab's own verified breach, before the network's pause certificate."""
    record_halts: bool = True
    """When a gate with a home stops for a certified pause, sign a halt record (a ``note``
    beginning "training halted at step N") into the lab's feed, for the network's reports."""
    timeout_s: float = Field(default=5.0, gt=0)
    """Timeout of one status request."""
    lab: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,64}$")
    """The lab whose node the gate polls and whose key must sign its answers; default: the
    home's lab, or ``member=`` for a gate polling by URL."""
    roster: str | None = None
    """Roster file the gate trusts (a roster envelope, a JSON list of them genesis first, or
    the ``GET /v1/roster`` document); relative to the home. Default: the home's store."""
    network: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """Pinned network id (genesis roster id). Without a home or roster file, the gate fetches
    the node's roster chain and accepts it only if its genesis has this id."""
    max_skew_s: float = Field(default=DEFAULT_MAX_SKEW_S, gt=0, le=86400)
    """Largest difference between a signed answer's ``issued_at`` and the gate's clock."""

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, **overrides: Any) -> GateConfig:
        try:
            return cls.model_validate({**(data or {}), **{k: v for k, v in overrides.items() if v is not None}})
        except ValidationError as e:
            raise config_section_error("[gate]", e) from e


@dataclass(frozen=True)
class GateDecision:
    """The gate's answer for one step; truthy when training may go on."""

    proceed: bool
    step: int
    reason: str
    source: Source
    """Where the answer came from: the node's status, the local store, the node being
    unreachable, or the previous answer (between polls)."""
    paused: tuple[str, ...] = ()
    """Proposal ids of active pauses that caused a stop."""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def stop(self) -> bool:
        return not self.proceed

    def __bool__(self) -> bool:
        return self.proceed

    def message(self) -> str:
        if self.proceed:
            return f"tripwire gate: step {self.step}: continue ({self.reason})"
        return f"tripwire gate: TRAINING STOPPED at step {self.step}: {self.reason}"


def _is_url(x: object) -> bool:
    return isinstance(x, str) and x.startswith(("http://", "https://"))


class TrainingGate:
    """Polls a node (and its home's store) and says whether training may continue."""

    def __init__(
        self,
        home_or_url: NodeHome | str | os.PathLike[str],
        *,
        key: SigningKey | None = None,
        member: str | None = None,
        tls: ssl.SSLContext | None = None,
        roster: RosterChain | str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
        run: Run | None = None,
        **overrides: Any,
    ) -> None:
        from node.home import NodeHome
        from node.net.tls import client_context_for

        self._owns_home = False
        self.home: NodeHome | None = None
        if isinstance(home_or_url, NodeHome):
            self.home = home_or_url
        elif _is_url(home_or_url):
            self.home = None
        else:
            self.home = NodeHome.open(Path(home_or_url))
            self._owns_home = True
        if roster is not None and not isinstance(roster, RosterChain):
            overrides["roster"] = str(roster)
        self.config = GateConfig.from_mapping(self.home.config.gate if self.home else None, **overrides)
        if _is_url(home_or_url):
            self.url: str | None = str(home_or_url).rstrip("/")
        else:
            self.url = self.config.url or (self.home.endpoint() if self.home else None)
        self.key = key or (self.home.key if self.home else None)
        self.member = member or (self.home.lab if self.home else None)
        if self.url is not None and (self.key is None or self.member is None):
            raise ConfigurationError("a gate polling a node by URL needs key= and member= (a roster member's key)")
        self.lab: str | None = self.config.lab or (self.home.lab if self.home else self.member)
        """The lab whose node answers and whose key must sign the pause state."""
        # Trust anchors, strongest first: a roster chain given here, a roster file, the home's
        # store (read at each poll, so roster updates are followed), the chain the node
        # serves checked against a pinned network id. With none, no answer can be trusted.
        self._chain: RosterChain | None = roster if isinstance(roster, RosterChain) else None
        if self._chain is None and self.config.roster is not None:
            base = self.home.path if self.home is not None else Path.cwd()
            self._chain = load_roster_file(base / self.config.roster, network=self.config.network)
        if self._chain is not None and self.config.network and self._chain.network_id != self.config.network:
            raise ConfigurationError(
                f"the gate's roster is network {self._chain.network_id[:16]}…, not the pinned "
                f"network {self.config.network[:16]}…"
            )
        if self.url is not None and self._chain is None and self.home is None and self.config.network is None:
            log.warning(
                "gate polling %s has no roster, roster file or pinned network: it cannot authenticate "
                "any answer and will stop training at its first answer",
                self.url,
            )
        # An https:// node with [tls] asks for a client certificate and is checked against [tls] ca;
        # a gate polling by URL is given its context (tls=).
        self.tls = tls if tls is not None else (client_context_for(self.home) if self.home else None)
        self.clock = clock
        self.wall_clock = wall_clock
        self._last_ok = clock()
        self._last_look: float | None = None
        self._last: GateDecision | None = None
        self._stopped: GateDecision | None = None
        self._client: PeerClient | None = None
        self._fetched: RosterChain | None = None
        self._plan_ref: PlanRef | None = None
        self._caches: Any = None
        """The local analysis' caches (node.pause.view.AnalysisCaches), made on first use."""
        """The run's plan state as last seen (local store or the node's signed state)."""
        self.last_pause_state: VerifiedPauseState | None = None
        """The last authenticated answer of the node."""
        self.run: Run | None = run
        """The run this gate guards (model, domains, planned and current compute): the gate
        stops only for pauses whose scope covers it (spec §6.10). None: every pause stops it."""
        self._record_run()

    def _record_run(self) -> None:
        """Tell the home which run this gate guards (``tripwire status`` lists its coverage)."""
        if self.home is None or self.run is None:
            return
        from node.pause.runs import record_run

        try:
            record_run(self.home.path, self.run)
        except OSError as e:  # status loses a line; the gate's decisions do not depend on it
            log.warning("could not record the run in %s: %s", self.home.path, e)

    def set_compute(self, current_flop: str) -> None:
        """Record the training compute the run has reached (so compute-scoped pauses stop it
        when it reaches their level). A gate without a described run describes one now."""
        base = self.run or Run()
        run = base.model_copy(update={"current_flop": current_flop})
        Run.model_validate(run.model_dump())  # refuse malformed compute text
        self.run = run
        self._record_run()

    # --- public --------------------------------------------------------------------------

    def check(self, step: int) -> GateDecision:
        """Decide for ``step``. Never raises for what the node, a network in between or the
        store does: whatever cannot be authenticated is a stop decision (fail closed)."""
        if self._stopped is not None:
            return GateDecision(False, step, self._stopped.reason, "cached", self._stopped.paused, self._stopped.details)
        now = self.clock()
        if self._last is not None and self._last_look is not None and now - self._last_look < self.config.poll_interval_s:
            # The run's compute moves every step: its plan's stop point and cadence are
            # checked against it at every call, not only at polls.
            stop = run_stop(self._plan_ref, self.run) if self._plan_ref is not None and self.run is not None else None
            if stop is None:
                return GateDecision(True, step, self._last.reason, "cached")
            decision = _plan_decision(step, stop, "cached", "the plan state last seen")
        else:
            self._last_look = now
            try:
                decision = self._look(step, now)
            except Exception as e:
                # The gate's promise is to stop, never to crash the training loop it guards.
                log.exception("gate check failed")
                decision = GateDecision(
                    False, step, f"the gate could not decide ({_describe(e)}); fail-closed", "unauthenticated"
                )
        self._last = decision
        if not decision.proceed:
            self._stopped = decision
            log.warning(decision.message())
            self._record_halt(decision)
        return decision

    def _record_halt(self, decision: GateDecision) -> None:
        """Sign the halt into the lab's own feed (a home gate holds the lab's key), so the
        network's reports can say where each lab's training stopped. A gate that cannot
        write still stops: the record is evidence, never a condition of stopping."""
        plan = decision.details.get("plan")
        if self.home is None or not (decision.paused or plan) or not self.config.record_halts:
            return
        refs = sorted(_certificate_ids(decision.details.get("certificates")))[:64]
        if isinstance(plan, str) and len(plan) == 64:
            refs = [plan]
        text = halt_text(decision.step, decision.reason)
        try:
            self.home.publish("note", {"text": text, "refs": refs})
        except Exception as e:  # the training loop stops whatever happens here
            log.error("gate stopped training but could not record the halt in the feed: %s", _describe(e))

    def step_hook(
        self, save: Callable[[int, Any], Any] | None = None, *, echo: Callable[[str], Any] | None = print
    ) -> Callable[[int, Any], bool]:
        """An ``on_step(step, model) -> bool`` hook: on a stop, ``save(step, model)`` (the
        checkpoint) then return False. ``train_tiny_arithmetic`` also saves its final
        model to ``out_dir`` when a hook stops it."""

        def on_step(step: int, model: Any) -> bool:
            d = self.check(step)
            if d.proceed:
                return True
            where = save(step, model) if save is not None else None
            if echo is not None:
                echo(d.message() + (f"; checkpoint saved to {where}" if where else ""))
            return False

        return on_step

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._owns_home and self.home is not None:
            self.home.close()

    def __enter__(self) -> TrainingGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------

    def _look(self, step: int, now: float) -> GateDecision:
        if self.home is not None and self.config.check_local:
            local = self._check_local(step)
            if local is not None:
                return local
        if self.url is None:
            return GateDecision(True, step, "no pause in the local store", "local")
        nonce = secrets.token_hex(32)
        try:
            code, headers, body = self._request(PAUSE_STATE_PATH, {"nonce": nonce})
            verified = self._authenticate(code, headers, body, nonce)
        except TransportError as e:
            down = now - self._last_ok
            if self.config.fail_closed and down > self.config.grace_s:
                return GateDecision(
                    False,
                    step,
                    f"the node at {self.url} has not answered for {down:.1f}s (grace {self.config.grace_s:g}s; "
                    f"fail-closed): {e.message}",
                    "unreachable",
                )
            return GateDecision(True, step, f"node unreachable for {down:.1f}s, within grace: {e.message}", "unreachable")
        except _Unauthenticated as e:
            return GateDecision(
                False,
                step,
                f"cannot authenticate the answer of {self.url} ({e}); fail-closed: an answer the gate "
                "cannot verify is no reason to believe training is allowed",
                "unauthenticated",
                details={"code": e.code},
            )
        self._last_ok = self.clock()
        self.last_pause_state = verified
        st = verified.statement
        covering = verified.covering(self.run)
        if self.run is not None and (self.run.model or self.run.plan):
            self._plan_ref = plan_for(st.plans, lab=st.node, model=self.run.model, plan_id=self.run.plan)
        plan_stop = verified.plan_stop(self.run)
        if plan_stop is not None and not covering:
            return _plan_decision(step, plan_stop, "node", f"signed by node {st.node} at {st.issued_at}")
        if st.paused and not covering:
            return GateDecision(
                True,
                step,
                f"paused, but no pause covers this run (signed by node {st.node} at {st.issued_at}: "
                + "; ".join(f"{c.proposal_id[:16]}… covers {describe_scope(c.scope)}" for c in st.certificates)
                + ")",
                "node",
            )
        if st.paused:
            pids = tuple(c.proposal_id for c in covering)
            return GateDecision(
                False,
                step,
                f"the network is paused (signed by node {st.node} at {st.issued_at}: pause certificate(s) for "
                f"proposal(s) {', '.join(p[:16] + '…' for p in pids) or '?'}); training may restart after a "
                "resume certificate",
                "node",
                pids,
                {"certificates": [c.model_dump(mode="json") for c in covering]},
            )
        return GateDecision(True, step, f"not paused (signed by node {st.node} at {st.issued_at})", "node")

    def _request(self, path: str, params: dict[str, Any] | None = None) -> tuple[int, Any, bytes]:
        from node.net.client import PeerClient

        if self._client is None:
            assert self.url is not None and self.key is not None and self.member is not None
            self._client = PeerClient(
                self.url, self.key, self.member, timeout=self.config.timeout_s, tls=self.tls,
                max_response_bytes=MAX_ANSWER_BYTES,
            )
        # PeerClient never follows redirects: a 3xx comes back here as an answer, and is refused.
        return self._client.request("GET", path, params=params)

    def _authenticate(self, code: int, headers: Any, body: bytes, nonce: str) -> VerifiedPauseState:
        answer = _answer_json(code, headers, body)
        chain = self._trusted_chain()
        assert self.lab is not None
        for attempt in range(2):
            try:
                return verify_pause_state(
                    answer, chain, node=self.lab, nonce=nonce, now=self.wall_clock(), max_skew_s=self.config.max_skew_s
                )
            except RosterVersionError as e:
                if attempt or chain is not self._fetched:
                    raise _Unauthenticated(e.message, e.code) from e
                # The node is on a newer roster than the chain fetched earlier: fetch it again.
                chain = self._fetch_chain()
            except PeerDataError as e:
                raise _Unauthenticated(e.message, e.code) from e
        raise AssertionError("unreachable")

    def _trusted_chain(self) -> RosterChain:
        if self._chain is not None:
            return self._chain
        if self.home is not None:
            try:
                chain = self.home.store.roster_chain()
            except TripwireError as e:
                raise _Unauthenticated(f"the home's roster cannot be read: {e.message}", e.code) from e
            if self.config.network is not None and chain.network_id != self.config.network:
                raise _Unauthenticated("the home's roster is not the pinned network", "wrong-network")
            return chain
        if self.config.network is not None:
            if self._fetched is None:
                self._fetched = self._fetch_chain()
            return self._fetched
        raise _Unauthenticated(
            "the gate has no roster to check signatures against (set roster= or [gate] roster, or "
            "[gate] network to pin the network id)",
            "configuration",
        )

    def _fetch_chain(self) -> RosterChain:
        """The node's roster chain, accepted only from the pinned genesis (spec §7.2-7.3): a
        party in between can withhold updates but cannot forge a roster."""
        code, headers, body = self._request("/v1/roster")
        doc = _answer_json(code, headers, body)
        try:
            try:
                roster = read_answer(RosterDocument, doc)  # members a newer node added are ignored
            except ValidationError as e:
                first = e.errors()[0]
                at = ".".join(str(p) for p in first["loc"]) or "the document"
                raise PeerDataError(
                    f"the roster answer is not a roster document: {at}: {first['msg']}", code="schema"
                ) from e
            chain = RosterChain.from_envelopes(roster.envelopes, expected_network=self.config.network)
        except PeerDataError as e:
            raise _Unauthenticated(f"the node's roster chain does not verify: {e.message}", e.code) from e
        held = self._fetched
        if held is not None and chain.current.version < held.current.version:
            # Never go back to an older roster someone in between serves us (rollback).
            return held
        self._fetched = chain
        return chain

    def _check_local(self, step: int) -> GateDecision | None:
        from node.pause.view import AnalysisCaches, local_analysis

        assert self.home is not None
        if self._caches is None:
            self._caches = AnalysisCaches()
        try:
            a, _ = local_analysis(self.home, self._caches)
        except Exception as e:
            # A store the gate cannot read cannot vouch for training.
            return GateDecision(
                False, step, f"the gate cannot read the local store ({_describe(e)}); fail-closed", "local"
            )
        active = a.pause.active_for(self.run)
        if active:
            pids = tuple(sorted(active))
            return GateDecision(
                False,
                step,
                f"the local store holds pause certificate(s) for proposal(s) {', '.join(p[:16] + '…' for p in pids)}; "
                "training may restart after a resume certificate",
                "local",
                pids,
                {"certificates": {pid: c.entry_id for pid, c in sorted(active.items())}},
            )
        if self.run is not None and (self.run.model or self.run.plan):
            refs = [p.ref() for p in a.plans.values()]
            ref = plan_for(refs, lab=self.home.lab, model=self.run.model, plan_id=self.run.plan)
            self._plan_ref = ref
            if ref is not None:
                stop = run_stop(ref, self.run)
                if stop is not None:
                    return _plan_decision(step, stop, "local", "the local store")
            elif self.run.plan is not None:
                return _plan_decision(
                    step,
                    RunStop("plan-unknown", f"the local store holds no training plan {self.run.plan[:16]}… of this "
                            "lab; fail-closed", self.run.plan),
                    "local",
                    "the local store",
                )
        if not self.config.stop_on_local_breach:
            return None
        lab = self.home.lab
        for rid, ev in a.evaluations.items():
            r = a.results[rid]
            if r.lab != lab:
                continue
            for rv in ev.verdicts:
                if rv.verdict != "breach" or "pause_proposal" not in rv.actions:
                    continue
                trigger = Trigger(result=rid, lab=lab, rule=rv.rule_id, policy_digest=ev.policy_digest)
                pid = pause_proposal_id(trigger)
                if _resumed_after(a, trigger):
                    continue  # the network already resumed after this breach
                return GateDecision(
                    False,
                    step,
                    f"this lab's result {rid[:16]}… (step {ev.checkpoint_step}) breaches rule {rv.rule_id!r}: "
                    f"{rv.reason}; pause proposal {pid[:16]}…",
                    "local",
                    (pid,),
                    {"result": rid, "rule": rv.rule_id},
                )
        return None


def _plan_decision(step: int, stop: RunStop, source: Source, where: str) -> GateDecision:
    """A stop for the run's training plan (spec §6.12): its stop point without an accepted
    safety case, an overdue evaluation, or compute past the plan."""
    return GateDecision(False, step, f"{stop.reason} ({where})", source, (), {"plan": stop.plan, "plan_stop": stop.kind})


class _Unauthenticated(Exception):
    """An answer the gate cannot authenticate (internal: always turned into a stop)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(f"{message} [{code}]")
        self.code = code


def _describe(e: BaseException) -> str:
    if isinstance(e, TripwireError):
        return e.diagnostics()
    return f"{type(e).__name__}: {e}"


def _answer_json(code: int, headers: Any, body: bytes) -> Any:
    """The JSON of a 200 answer; anything else is unauthenticated."""
    if 300 <= code < 400:
        where = headers.get("location", "?") if headers is not None else "?"
        raise _Unauthenticated(f"HTTP {code} redirect to {where[:200]} (gates never follow redirects)", "redirect")
    if code != 200:
        detail = ""
        try:
            problem = json.loads(body)
            if isinstance(problem, dict):
                detail = f": {str(problem.get('code', ''))[:64]} {str(problem.get('detail', ''))[:200]}".rstrip()
        except ValueError:
            pass
        raise _Unauthenticated(f"HTTP {code}{detail}", f"http-{code}")
    try:
        return parse_json_strict(body, max_bytes=MAX_ANSWER_BYTES)
    except PeerDataError as e:
        raise _Unauthenticated(f"the answer is not JSON: {e.message}", e.code) from e


def load_roster_file(path: Path, *, network: str | None = None) -> RosterChain:
    """A roster chain from a file: one roster envelope (the genesis), a JSON list of roster
    envelopes (genesis first), or the ``GET /v1/roster`` document. Raises
    :class:`ConfigurationError` when it cannot be read or does not verify."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise ConfigurationError(f"[gate] roster: cannot read {path}: {e}", code="config") from e
    items = data.get("envelopes") if isinstance(data, dict) and "envelopes" in data else data
    items = items if isinstance(items, list) else [items]
    try:
        return RosterChain.from_envelopes([Envelope.parse(e) for e in items], expected_network=network)
    except PeerDataError as e:
        raise ConfigurationError(f"[gate] roster: {path} does not verify: {e.diagnostics()}", code="config") from e


def _make_callback_class() -> type:
    from transformers import TrainerCallback

    class TripwireGateCallback(TrainerCallback):
        """HF ``Trainer`` callback: on a pause, save a checkpoint and stop training.

        ``TripwireGateCallback(home_or_url, **gate_options)`` or
        ``TripwireGateCallback(gate=TrainingGate(...))``. The decision that stopped
        training is kept in ``.decision``.
        """

        def __init__(self, home_or_url: Any = None, *, gate: TrainingGate | None = None, **options: Any) -> None:
            if gate is None:
                if home_or_url is None:
                    raise ConfigurationError("TripwireGateCallback needs a home, a node URL or gate=")
                gate = TrainingGate(home_or_url, **options)
            self.gate = gate
            self.decision: GateDecision | None = None

        def _apply(self, step: int, control: Any) -> Any:
            d = self.gate.check(step)
            if not d.proceed:
                self.decision = d
                # The Trainer saves a checkpoint when should_save is set, then stops.
                control.should_save = step > 0
                control.should_training_stop = True
                log.warning(d.message())
            return control

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            return self._apply(state.global_step, control)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            return self._apply(state.global_step, control)

    return TripwireGateCallback


_CALLBACK: type | None = None


def __getattr__(name: str) -> Any:
    # transformers is imported only when the callback is asked for (plain loops need not pay).
    global _CALLBACK
    if name == "TripwireGateCallback":
        if _CALLBACK is None:
            _CALLBACK = _make_callback_class()
        return _CALLBACK
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["GateConfig", "GateDecision", "TrainingGate", "TripwireGateCallback", "load_roster_file"]  # noqa: F822 (lazy, see __getattr__)


def _resumed_after(a: Any, trigger: Trigger) -> bool:
    """Whether some pause proposal on ``trigger`` (whatever scope the policy gave it) has
    been resumed."""
    for pid in a.resumed:
        st = a.proposals.get(pid)
        body = st.entries[0].statement.body if st is not None else None
        if isinstance(body, PauseProposalBody) and body.trigger == trigger:
            return True
    return False
