"""Pause scopes: which training runs a pause covers (spec §6.10).

A moratorium is on *further capabilities*, not on every run of every lab: each pause
proposal may carry a scope, signed with it and bound into its id, and a training gate stops
only for pauses whose scope covers its run. No scope means every run (the rule before
scopes existed, so older proposals keep their bytes and ids).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from protocol.canonical import DECIMAL_RE

if TYPE_CHECKING:
    from protocol.policy import Rule

__all__ = ["Run", "Scope", "breach_scope", "covers", "describe", "will_cover"]

_Flop = Annotated[str, StringConstraints(pattern=DECIMAL_RE.pattern, max_length=64)]
_Domain = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True)


class Scope(_Model):
    """Which runs a pause covers."""

    kind: Literal["all", "compute_above", "domain"]
    """``all``: every run; ``compute_above``: runs once their training compute reaches
    ``flop``; ``domain``: runs of models declared in capability ``domain``."""
    flop: _Flop | None = None
    """For ``compute_above``: the compute level (FLOP, positive decimal text)."""
    domain: _Domain | None = None
    """For ``domain``: the capability domain (a policy rule's ``domain``, e.g. ``bio``)."""

    @model_validator(mode="after")
    def _fields_match_kind(self) -> Scope:
        if self.kind == "compute_above":
            if self.flop is None or self.domain is not None:
                raise ValueError("a compute_above scope needs flop and no domain")
            if Decimal(self.flop) <= 0:
                raise ValueError(f"scope flop {self.flop} must be positive")
        elif self.kind == "domain":
            if self.domain is None or self.flop is not None:
                raise ValueError("a domain scope needs domain and no flop")
        elif self.flop is not None or self.domain is not None:
            raise ValueError("an 'all' scope takes neither flop nor domain")
        return self

    def narrows(self, other: Scope | None) -> bool:
        """True when every run this scope covers is also covered by ``other`` (a resume may
        only narrow a pause's scope, never widen it). ``None`` is every run."""
        if other is None or other.kind == "all":
            return True
        if self.kind != other.kind:
            return False
        if self.kind == "compute_above":
            return Decimal(self.flop or "0") >= Decimal(other.flop or "0")
        return self.domain == other.domain


class Run(_Model):
    """What a training gate knows about its run."""

    model: Annotated[str, StringConstraints(max_length=256)] = ""
    """The model being trained (as named in its eval results and training plan)."""
    domains: tuple[_Domain, ...] = ()
    """Capability domains the model is declared in (empty: none declared)."""
    planned_flop: _Flop | None = None
    """Training compute the run is planned to reach (None: not declared)."""
    current_flop: _Flop | None = None
    """Training compute reached so far (None: unknown)."""
    plan: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None
    """Entry id of the run's training plan (spec §6.12); None: the lab's latest plan for
    ``model``, if any."""


def covers(scope: Scope | None, run: Run | None) -> bool:
    """Whether a pause with ``scope`` stops ``run`` now.

    Fails closed: a gate that does not describe its run (``run`` None), or that does not
    know its compute under a compute scope, is covered. A ``compute_above`` scope covers a
    run once its current compute reaches the level (a run planned past the level trains up
    to it); a ``domain`` scope covers runs that declare the domain.
    """
    if scope is None or scope.kind == "all" or run is None:
        return True
    if scope.kind == "compute_above":
        if run.current_flop is None:
            return True
        return Decimal(run.current_flop) >= Decimal(scope.flop or "0")
    return scope.domain in run.domains


def will_cover(scope: Scope | None, run: Run) -> bool:
    """Whether ``scope`` covers ``run`` now or before its planned compute is reached."""
    if covers(scope, run):
        return True
    if scope is not None and scope.kind == "compute_above" and run.planned_flop is not None:
        return Decimal(run.planned_flop) >= Decimal(scope.flop or "0")
    return False


def describe(scope: Scope | None) -> str:
    """The scope in plain words, for status, the CLI and reports."""
    if scope is None or scope.kind == "all":
        return "all training runs"
    if scope.kind == "compute_above":
        return f"training runs once their compute reaches {scope.flop} FLOP"
    return f"training runs of models in the {scope.domain!r} capability domain"


def breach_scope(rule: Rule, breaching_flop: str) -> Scope | None:
    """The scope a pause proposed for ``rule``'s breach carries (policy ``pause_scope``);
    None (every run) when the rule sets none. Every node derives the same scope from the
    same policy and result, and refuses proposals that carry another (a lab cannot widen or
    narrow a breach pause by proposing it first)."""
    ps = rule.pause_scope
    if ps is None:
        return None
    if ps.kind == "all":
        return Scope(kind="all")
    if ps.kind == "compute_above":
        return Scope(kind="compute_above", flop=ps.flop)
    if ps.kind == "domain":
        return Scope(kind="domain", domain=rule.domain)
    return Scope(kind="compute_above", flop=breaching_flop)
