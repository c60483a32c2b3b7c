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

1. the node's ``GET /v1/status`` (a signed request, :mod:`node.client`): ``paused`` stops;
2. with a home, the home's own store directly: a valid pause certificate not ended by a
   resume stops, and so (``stop_on_local_breach``, default on) does a verified breach of
   this lab's own results under a rule that calls for a pause, unless that trigger's
   pause was already resumed. This catches a breach before the network has voted, and
   a pause while the node's API is down;
3. fail closed (``fail_closed``, default on): when the node has not answered for longer
   than ``grace_s``, training stops too. A gate that cannot see the network cannot
   promise the network has not paused.

A stop is final for the gate object: training resumes only when a person restarts it
(after a resume certificate, the next gate will let it run).
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.entries import Trigger, pause_proposal_id
from protocol.errors import ConfigurationError, PeerDataError, TransportError, TripwireError

if TYPE_CHECKING:
    from node.home import NodeHome
    from protocol.keys import SigningKey

log = logging.getLogger(__name__)

Source = Literal["node", "local", "unreachable", "cached"]


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
    timeout_s: float = Field(default=5.0, gt=0)
    """Timeout of one status request."""

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, **overrides: Any) -> GateConfig:
        try:
            return cls.model_validate({**(data or {}), **{k: v for k, v in overrides.items() if v is not None}})
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ConfigurationError(f"[gate] {loc}: {err['msg']}", code="config") from e


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
        clock: Callable[[], float] = time.monotonic,
        **overrides: Any,
    ) -> None:
        from node.home import NodeHome
        from node.tls import client_context_for

        self._owns_home = False
        self.home: NodeHome | None = None
        if isinstance(home_or_url, NodeHome):
            self.home = home_or_url
        elif _is_url(home_or_url):
            self.home = None
        else:
            self.home = NodeHome.open(Path(home_or_url))
            self._owns_home = True
        self.config = GateConfig.from_mapping(self.home.config.gate if self.home else None, **overrides)
        if _is_url(home_or_url):
            self.url: str | None = str(home_or_url).rstrip("/")
        else:
            self.url = self.config.url or (self.home.endpoint() if self.home else None)
        self.key = key or (self.home.key if self.home else None)
        self.member = member or (self.home.lab if self.home else None)
        if self.url is not None and (self.key is None or self.member is None):
            raise ConfigurationError("a gate polling a node by URL needs key= and member= (a roster member's key)")
        # An https:// node with [tls] asks for a client certificate and is checked against [tls] ca;
        # a gate polling by URL is given its context (tls=).
        self.tls = tls if tls is not None else (client_context_for(self.home) if self.home else None)
        self.clock = clock
        self._last_ok = clock()
        self._last_look: float | None = None
        self._last: GateDecision | None = None
        self._stopped: GateDecision | None = None
        self._client: Any = None
        self.last_status: dict[str, Any] | None = None

    # --- public --------------------------------------------------------------------------

    def check(self, step: int) -> GateDecision:
        """Decide for ``step``; never raises for node trouble (that is what fail-closed is for)."""
        if self._stopped is not None:
            return GateDecision(False, step, self._stopped.reason, "cached", self._stopped.paused, self._stopped.details)
        now = self.clock()
        if self._last is not None and self._last_look is not None and now - self._last_look < self.config.poll_interval_s:
            return GateDecision(True, step, self._last.reason, "cached")
        self._last_look = now
        decision = self._look(step, now)
        self._last = decision
        if not decision.proceed:
            self._stopped = decision
            log.warning(decision.message())
        return decision

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
        try:
            status = self._status()
        except (TransportError, PeerDataError) as e:
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
        self._last_ok = self.clock()
        self.last_status = status
        if status.get("paused") is True:
            pause = status.get("pause") or {}
            certs = [c for c in pause.get("certificates", []) if isinstance(c, dict)]
            pids = tuple(str(c.get("proposal_id")) for c in certs)
            return GateDecision(
                False,
                step,
                f"the network is paused (node {self.url}: pause certificate(s) for proposal(s) "
                f"{', '.join(p[:16] + '…' for p in pids) or '?'}); training may restart after a resume certificate",
                "node",
                pids,
                {"certificates": certs},
            )
        if status.get("paused") is not False:
            # A status without a clear answer is no reason to believe training is allowed.
            return GateDecision(False, step, f"the node at {self.url} gave no pause state", "node")
        return GateDecision(True, step, "not paused", "node")

    def _status(self) -> dict[str, Any]:
        from node.client import PeerClient

        if self._client is None:
            assert self.url is not None and self.key is not None and self.member is not None
            self._client = PeerClient(
                self.url, self.key, self.member, timeout=self.config.timeout_s, tls=self.tls
            )
        return self._client.status()  # type: ignore[no-any-return]

    def _check_local(self, step: int) -> GateDecision | None:
        from node.coordinator import local_analysis

        assert self.home is not None
        try:
            a, _ = local_analysis(self.home)
        except TripwireError as e:
            log.warning("gate cannot read the local store: %s", e.message)
            return None
        if a.paused:
            pids = tuple(sorted(a.paused))
            return GateDecision(
                False,
                step,
                f"the local store holds pause certificate(s) for proposal(s) {', '.join(p[:16] + '…' for p in pids)}; "
                "training may restart after a resume certificate",
                "local",
                pids,
                {"certificates": dict(a.paused)},
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
                pid = pause_proposal_id(Trigger(result=rid, lab=lab, rule=rv.rule_id, policy_digest=ev.policy_digest))
                if pid in a.resumed:
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


def _make_callback_class() -> type:
    from transformers import TrainerCallback

    class TripwireGateCallback(TrainerCallback):  # type: ignore[misc]
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


__all__ = ["GateConfig", "GateDecision", "TrainingGate", "TripwireGateCallback"]  # noqa: F822 (lazy, see __getattr__)
