"""The error contract (spec §10): every error Tripwire raises on purpose belongs to one
family by whose fault it is, and carries a stable code, an exit code, an HTTP status and a
remediation; diagnostics show the cause chain on request."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import node
import protocol
import reports
from protocol.errors import ConfigurationError, InternalError, PeerDataError, TransportError, TripwireError

FAMILIES = {PeerDataError: (3, 422), ConfigurationError: (2, 500), TransportError: (4, 502), InternalError: (1, 500)}


def _all_error_classes() -> list[type[TripwireError]]:
    for pkg in (protocol, node, reports):
        for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if mod.name.endswith("__main__") or ".migrations" in mod.name:
                continue
            if ".evals." in mod.name and mod.name.split(".")[-1] in ("distributed", "training", "tinymodels"):
                continue  # these import torch at module level; their errors live in node.evals.errors
            try:
                importlib.import_module(mod.name)
            except ImportError:  # an optional extra that is not installed
                continue
    seen: list[type[TripwireError]] = []
    todo: list[type[TripwireError]] = [TripwireError]
    while todo:
        c = todo.pop()
        for sub in c.__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return [c for c in seen if c.__module__.split(".")[0] in ("protocol", "node", "reports")]


def test_every_error_is_in_exactly_one_family_with_its_exit_code_and_status() -> None:
    classes = _all_error_classes()
    assert len(classes) > 60
    for c in classes:
        if c in FAMILIES:
            continue
        families = [f for f in FAMILIES if issubclass(c, f)]
        assert len(families) == 1, f"{c.__module__}.{c.__name__} is in {families or 'no family'}"
        exit_code, _ = FAMILIES[families[0]]
        assert c.exit_code == exit_code, c
        assert 400 <= c.http_status <= 599, c
        assert c.code and c.code != "tripwire-error", c
        assert c.__doc__, f"{c.__name__} has no docstring"
        assert c.remediation, f"{c.__name__} says nothing about what to do"


def test_codes_are_unique_per_class() -> None:
    by_code: dict[str, type[TripwireError]] = {}
    for c in _all_error_classes():
        if "code" not in vars(c):
            continue
        other = by_code.setdefault(c.code, c)
        assert other is c, f"code {c.code!r} is used by {other.__name__} and {c.__name__}"


def test_diagnostics_show_remediation_and_on_request_the_cause_chain() -> None:
    try:
        try:
            raise OSError(13, "Permission denied")
        except OSError as e:
            raise ConfigurationError("cannot read key file k.pem", remediation="chmod 0600 k.pem") from e
    except ConfigurationError as err:
        short, long = err.diagnostics(), err.diagnostics(verbose=True)
    assert short.splitlines() == ["cannot read key file k.pem [configuration]", "  what to do: chmod 0600 k.pem"]
    assert long.startswith(short) and "caused by: PermissionError: [Errno 13] Permission denied" in long


@pytest.mark.parametrize("argv", [["--verbose", "status", "--home", "{tmp}/missing"]])
def test_cli_verbose_shows_causes_and_the_exit_code_is_the_familys(argv, tmp_path, capsys) -> None:
    from node.cli import main

    rc = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and "[home-not-found]" in err and "what to do:" in err
