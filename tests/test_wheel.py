"""The built wheel is what each user installs: its contents, and a clean core install.

The first test only builds and opens the wheel. The slow one installs it, with its core
dependencies from the package index, into a fresh venv (no system site-packages, so
nothing leaks in from the development environment), checks that torch is absent, and
verifies an evidence bundle rendered here with the installed ``tripwire verify``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from datetime import timedelta
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "tokenizers", "safetensors", "lm-eval", "inspect-ai", "vllm")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = tmp_path_factory.mktemp("build")
    # setuptools builds in the source tree (build/, *.egg-info): build from a private copy of
    # the sources, so the checkout is left as it was and tests running at the same time in
    # other workers (make test runs several) never see a half-written build folder.
    src = build / "src"
    # What a clean checkout does not hold: git's data and what .gitignore names (the dev
    # environment, caches, build output; its patterns are plain names, as ignore_patterns takes).
    ignored = [ln.rstrip("/") for ln in (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()
               if ln.strip() and not ln.startswith("#")]
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", *ignored))
    # --no-build-isolation: setuptools and wheel come from this environment (no index needed).
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        check=True, cwd=build, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    (whl,) = out.glob("tripwire-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_ships_specs_and_a_torch_free_core(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    specs = REPO / "specs"
    for sub, pattern in [("policies", "*.yaml"), ("suites", "*.yaml"), ("evals", "*.yaml"), ("schemas", "*.json")]:
        for f in (specs / sub).glob(pattern):
            assert f"tripwire_specs/{sub}/{f.name}" in names, f"{sub}/{f.name} is not shipped"
    for f in ("openapi.json", "protocol.md", "evidence.md", "vectors/entries.json"):
        assert f"tripwire_specs/{f}" in names
    # Every non-Python file the packages read at run time (templates, migrations, ...).
    for d in ("protocol", "node", "reports"):
        for f in (REPO / d).rglob("*"):
            if f.is_file() and f.suffix not in (".py", ".pyc", ".md") and "__pycache__" not in f.parts:
                assert f.relative_to(REPO).as_posix() in names, f"{f.relative_to(REPO)} is not shipped"
    assert not any(n.startswith(("tests/", "bench/", "specs/")) for n in names)
    assert not any(n.endswith("generate.py") for n in names), "generator scripts are dev tools, not data"
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    msg = Parser().parsestr(zipfile.ZipFile(wheel).read(meta).decode())
    core = [r for r in msg.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert not [r for r in core if r.split(">")[0].split("=")[0].split("[")[0].strip().lower() in HEAVY]
    assert {"evals", "lmeval", "inspect", "vllm", "postgres", "test"} <= set(msg.get_all("Provides-Extra") or [])


def _bundle(root: Path) -> tuple[Path, Path]:
    """A small real network: two labs, signed results, a regulator report (no PDF)."""
    from synthetic import T0, _result_body

    from node.cli import main
    from node.home.netsetup import create_network

    homes = create_network(root, ["lab-a", "lab-b"], ports=[18791, 18792], seed=7, issued_at=T0 - timedelta(days=1))
    try:
        for k in range(2):
            for i, h in enumerate(homes):
                body = _result_body(model=f"m-{h.lab}", step=100 * (k + 1), flop=10 ** (18 + k),
                                    acc=0.1 + 0.2 * k + 0.05 * i, n=200, started=T0 + timedelta(hours=k))
                h.publish("eval_result", body, now=T0 + timedelta(hours=k, minutes=5 + i))
        homes[0].store.ingest(homes[1].store.feed("lab-b"), now=T0 + timedelta(hours=3))
        genesis = root / "genesis.json"
        genesis.write_text(json.dumps(homes[0].store.roster_chain().envelopes()[0].to_dict()), encoding="utf-8")
    finally:
        for h in homes:
            h.close()
    out = root / "report"
    assert main(["report", "--home", str(root / "lab-a"), "--out", str(out), "--audience", "regulator", "--no-pdf"]) == 0
    return out, genesis


@pytest.mark.slow
def test_clean_core_install_verifies_a_bundle_without_torch(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py, cli = venv / "bin" / "python", venv / "bin" / "tripwire"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt"), str(wheel)],
                   check=True, env=env)
    probe = "import importlib.util as u; print([m for m in ('torch', 'transformers') if u.find_spec(m)])"
    assert subprocess.run([str(py), "-c", probe], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
    report, genesis = _bundle(tmp_path / "net")
    run = lambda *a: subprocess.run([str(cli), *a], env=env, cwd=tmp_path, capture_output=True, text=True)  # noqa: E731
    r = run("verify", str(report), "--roster", str(genesis))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FAIL" not in r.stdout
    r = run("suites", "--json")
    assert r.returncode == 0 and "site-packages" in json.loads(r.stdout)["specs"]
    r = run("demo", "--workdir", str(tmp_path / "demo"))
    assert r.returncode == 2 and 'pip install "tripwire[evals]"' in r.stderr
    # An edited bundle fails verification in the same install.
    ev = report / "evidence.json"
    doc = json.loads(ev.read_text(encoding="utf-8"))
    del doc["entries"][-1], doc["proofs"][-1]
    ev.write_text(json.dumps(doc), encoding="utf-8")
    r = run("verify", str(report), "--roster", str(genesis))
    assert r.returncode == 3 and "FAIL" in r.stdout + r.stderr
