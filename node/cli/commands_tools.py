"""Commands about the install itself: ``--version``, ``validate`` and ``suites``.

None of them needs torch: ``validate`` loads suites and tasks with the spec loader only
(no model), so a regulator's core install can check the files a network adopts.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from node.cli._app import app, console
from node.errors import InputFileError, MissingExtraError
from node.home.resources import packaged_suites, specs_dir

__all__ = ["classify", "distribution_version", "require_extra"]

DISTRIBUTION = "tripwire"
EVALS_INSTALL = 'pip install "tripwire[evals]"'


def distribution_version() -> str:
    """The installed distribution's version ("unknown" when run from an uninstalled checkout)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def require_extra(what: str, modules: tuple[str, ...] = ("torch", "transformers"), extra: str = "evals") -> None:
    """Fail before any work when ``what`` needs an extra that is not installed, naming the pip command."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        cmd = EVALS_INSTALL if extra == "evals" else f'pip install "tripwire[{extra}]"'
        raise MissingExtraError(
            f"{what} needs the `{extra}` extra ({', '.join(missing)} not installed): run  {cmd}  "
            "(GPU machines: install your CUDA build of torch first)"
        )


#: Set by the root callback; read by :func:`node.cli.main` when it reports an error.
VERBOSE: dict[str, bool] = {"on": False}


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"tripwire {distribution_version()}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the installed version and exit.", is_eager=True,
                     callback=_version_callback),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="On an error, show its chain of causes as well.")
    ] = False,
) -> None:
    """Tripwire: shared dangerous-capability tripwires with a verifiable coordinated pause."""
    VERBOSE["on"] = verbose


class _TolerantLoader(yaml.SafeLoader):
    """Reads any YAML for classification only: unknown tags (lm-eval's ``!function``) become None."""


def _unknown_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> None:
    return None


_TolerantLoader.add_multi_constructor("!", _unknown_tag)
_TolerantLoader.add_multi_constructor("tag:", _unknown_tag)

_WHAT_IS_WHAT = (
    "a suite has `suite:` and `tasks:`; a task has `task:` with `kind:` (or lm-eval's "
    "`output_type:` / `include:`); a threshold policy has `id:` and `rules:`"
)


def classify(path: Path) -> tuple[str, dict[str, Any]]:
    """``("suite" | "task" | "policy", top-level mapping)`` for a file, from its keys alone."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise InputFileError(f"{path}: no such file") from e
    except IsADirectoryError as e:
        raise InputFileError(f"{path}: is a directory, not a suite, task or policy file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"{path}: cannot read: {e}") from e
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_TolerantLoader)  # noqa: S506
    except (ValueError, yaml.YAMLError) as e:
        raise InputFileError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from e
    if not isinstance(doc, dict):
        raise InputFileError(
            f"{path}: expected a mapping at the top level, got {type(doc).__name__}: {_WHAT_IS_WHAT}"
        )
    keys = set(doc)
    if {"suite", "tasks"} <= keys:
        return "suite", doc
    if {"id", "rules"} <= keys:
        return "policy", doc
    if "task" in keys or keys & {"kind", "output_type", "include"}:
        return "task", doc
    shown = ", ".join(sorted(map(str, keys))[:12]) or "none"
    raise InputFileError(f"{path}: not a suite, task or policy file (top-level keys: {shown}): {_WHAT_IS_WHAT}")


def _validate_suite(path: Path) -> list[str]:
    from node.evals.spec import load_suite

    s = load_suite(path)
    lines = [f"{path}: valid suite {s.id} {s.version}, {len(s.tasks)} task(s), digest {s.digest}"]
    lines += [f"  task {t.name} ({t.kind}, {len(t.docs)} items)  {t.digest}" for t in s.tasks]
    return lines


def _validate_task(path: Path) -> list[str]:
    from node.evals.spec import load_task

    t = load_task(path)
    return [f"{path}: valid task {t.name} ({t.kind}, {len(t.docs)} items), digest {t.digest}"]


def _validate_policy(path: Path) -> list[str]:
    from protocol.policy import Policy

    text = path.read_text(encoding="utf-8")
    p = Policy.from_json(text.encode("utf-8")) if path.suffix == ".json" else Policy.from_yaml(text)
    return [f"{path}: valid policy {p.id} v{p.version}, {len(p.rules)} rule(s), digest {p.digest}"]


_VALIDATORS = {"suite": _validate_suite, "task": _validate_task, "policy": _validate_policy}


@app.command("validate")
def validate(
    files: Annotated[list[Path], typer.Argument(help="Suite, task or policy files (YAML; policies also JSON).")],
) -> None:
    """Check suite, task and policy files: say which kind each is, and whether it loads.

    Exit 0 when every file is valid. A file that is not one of the three kinds, or that
    its loader refuses, stops with that loader's error and exit code (2 for a spec or
    usage problem, 3 for bad data such as an invalid policy or a dataset digest mismatch).
    """
    from protocol.errors import TripwireError

    for path in files:
        kind, _ = classify(path)
        try:
            lines = _VALIDATORS[kind](path)
        except TripwireError as e:
            if str(path) in e.message:
                raise
            # e.g. a suite's task file is missing: say which suite named it. Same class and code.
            raise type(e)(f"{path} ({kind}): {e.message}", code=e.code) from e
        for line in lines:
            console.print(line, highlight=False, soft_wrap=True)


def _suite_rows(paths: list[Path], origin: str) -> list[dict[str, Any]]:
    from node.evals.spec import load_suite

    rows = []
    for p in paths:
        s = load_suite(p)
        rows.append({"id": s.id, "version": s.version, "digest": s.digest, "tasks": len(s.tasks),
                     "origin": origin, "path": str(p)})
    return rows


@app.command("suites")
def suites(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Also list this node's suites: its own (DIR/suites/*.yaml) and "
                     "those its roster pins.", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List the eval suites this install ships and, with --home, the ones a node knows."""
    rows = _suite_rows(packaged_suites(), "packaged")
    if home is not None:
        from node.home import NodeHome

        if not home.is_dir():
            raise InputFileError(f"{home}: no such node home directory")
        rows += _suite_rows(sorted((home / "suites").glob("*.yaml")), "node")
        with NodeHome.open(home) as h:
            pinned = list(h.store.roster_chain().current.roster.suites) if h.store.has_roster() else []
        known = {r["digest"]: r for r in rows}
        for ref in pinned:
            row = known.get(ref.digest)
            if row is not None:
                row["pinned"] = True
            else:
                rows.append({"id": ref.id, "version": ref.version, "digest": ref.digest, "tasks": None,
                             "origin": "roster", "path": None, "pinned": True})
    for r in rows:
        r.setdefault("pinned", False)
    if as_json:
        typer.echo(json.dumps({"specs": str(specs_dir()), "suites": rows}, indent=2))
        return
    for r in rows:
        where = r["path"] or "pinned by the roster; no local file has this digest"
        tasks = f"{r['tasks']} task(s)" if r["tasks"] is not None else "tasks unknown"
        pin = "  [pinned]" if r["pinned"] else ""
        console.print(f"{r['id']} {r['version']}  {r['origin']}{pin}  {tasks}  {r['digest']}\n  {where}",
                      highlight=False, soft_wrap=True)
