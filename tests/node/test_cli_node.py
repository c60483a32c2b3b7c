"""`tripwire init | identity | roster | peers | status` end to end, through node.cli.main and
through the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.cli import main
from node.home import NodeHome

POLICY = Path(__file__).resolve().parents[2] / "specs" / "policies" / "demo.yaml"
LABS = ["alpha", "beta", "gamma"]


def ceremony(tmp: Path) -> Path:
    """Init three homes and run the roster ceremony; returns the genesis envelope path."""
    for i, lab in enumerate(LABS):
        assert (
            main(
                ["init", "--home", str(tmp / lab), "--lab", lab, "--endpoint", f"http://127.0.0.1:{8801 + i}"]
            )
            == 0
        )
        assert main(["identity", "--home", str(tmp / lab), "--out", str(tmp / f"{lab}.json")]) == 0
    args = ["roster", "draft", "--out", str(tmp / "draft.json"), "--network-name", "test-net"]
    for lab in LABS:
        args += ["--lab", str(tmp / f"{lab}.json")]
    args += ["--pause-weight", "2", "--resume-weight", "2", "--roster-threshold", "2"]
    args += ["--policy", str(POLICY), "--expires", "2099-01-01"]
    assert main(args) == 0
    for lab in LABS:
        assert (
            main(
                [
                    "roster",
                    "sign",
                    str(tmp / "draft.json"),
                    "--home",
                    str(tmp / lab),
                    "--out",
                    str(tmp / f"s-{lab}.json"),
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "roster",
                "combine",
                *[str(tmp / f"s-{lab}.json") for lab in LABS],
                "--out",
                str(tmp / "genesis.json"),
            ]
        )
        == 0
    )
    return tmp / "genesis.json"


def test_ceremony_install_show_status_peers(tmp_path, capsys):
    genesis = ceremony(tmp_path)
    assert len(json.loads(genesis.read_text())["signatures"]) == 3
    for lab in LABS:
        assert main(["roster", "install", str(genesis), "--home", str(tmp_path / lab)]) == 0
    assert main(["roster", "install", str(genesis), "--home", str(tmp_path / "alpha")]) == 0  # idempotent
    capsys.readouterr()
    assert main(["roster", "show", "--home", str(tmp_path / "alpha"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 1 and [m["id"] for m in shown["labs"]] == LABS
    assert main(["status", "--home", str(tmp_path / "beta"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["lab"] == "beta" and status["roster"]["version"] == 1 and status["equivocations"] == 0
    assert status["network"] == shown["network"]
    assert main(["peers", "list", "--home", str(tmp_path / "alpha"), "--json"]) == 0
    assert {p["lab"] for p in json.loads(capsys.readouterr().out)} == {"beta", "gamma"}
    assert (
        main(
            ["peers", "add", "--home", str(tmp_path / "alpha"), "--lab", "beta", "--url", "http://10.0.0.2:9"]
        )
        == 0
    )
    with NodeHome.open(tmp_path / "alpha") as h:
        assert {p.lab: p.url for p in h.peers()}["beta"] == "http://10.0.0.2:9"
    assert main(["status", "--home", str(tmp_path / "alpha")]) == 0
    assert main(["roster", "show", "--home", str(tmp_path / "alpha")]) == 0


def test_status_sections_share_one_analysis_of_the_store(tmp_path, capsys, monkeypatch):
    """The pause, plan and forecast sections of one `tripwire status` read one analysis, not
    one each; a refusal is shared the same way (each section says why it has nothing)."""
    import node.pause.view as view
    from protocol.errors import ConfigurationError

    genesis = ceremony(tmp_path)
    assert main(["roster", "install", str(genesis), "--home", str(tmp_path / "alpha")]) == 0
    calls: list[str] = []
    real = view.local_analysis

    def counted(home, caches=None):
        calls.append(home.lab)
        return real(home, caches)

    monkeypatch.setattr(view, "local_analysis", counted)
    capsys.readouterr()
    assert main(["status", "--home", str(tmp_path / "alpha"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert calls == ["alpha"]
    assert status["pause"]["state"] == "not paused" and "plans" in status["plans"] and "track" in status["forecasts"]

    def refused(home, caches=None):
        calls.append(home.lab)
        raise ConfigurationError("the store cannot be analysed")

    calls.clear()
    monkeypatch.setattr(view, "local_analysis", refused)
    assert main(["status", "--home", str(tmp_path / "alpha"), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert calls == ["alpha"]
    assert status["pause"] == {"state": "unknown", "note": "the store cannot be analysed"}
    assert status["forecasts"] == {"error": "the store cannot be analysed"}


def _misuse_cases(tmp: Path) -> list[tuple[str, list[str], int, str]]:
    t = str(tmp)
    return [
        ("init-existing-home", ["init", "--home", f"{t}/alpha", "--lab", "alpha"], 2, "already holds"),
        ("init-bad-lab-id", ["init", "--home", f"{t}/x", "--lab", "Not OK"], 2, "lab id"),
        # `$` alone would match before a trailing newline
        ("init-lab-id-trailing-newline", ["init", "--home", f"{t}/x", "--lab", "alpha\n"], 2, "lab id"),
        (
            "init-missing-passphrase-env",
            ["init", "--home", f"{t}/y", "--lab", "y", "--passphrase-env", "TW_NOPE"],
            2,
            "TW_NOPE",
        ),
        ("status-not-a-home", ["status", "--home", f"{t}/nowhere"], 2, "not a node home"),
        (
            "install-half-signed",
            ["roster", "install", f"{t}/s-alpha.json", "--home", f"{t}/beta"],
            3,
            "lacks signatures",
        ),
        (
            "install-draft-not-envelope",
            ["roster", "install", f"{t}/draft.json", "--home", f"{t}/beta"],
            2,
            "roster sign",
        ),
        (
            "install-missing-file",
            ["roster", "install", f"{t}/none.json", "--home", f"{t}/beta"],
            2,
            "cannot read",
        ),
        (
            "combine-different-drafts",
            ["roster", "combine", f"{t}/s-alpha.json", f"{t}/other.json", "--out", f"{t}/c.json"],
            3,
            "different roster",
        ),
        (
            "sign-with-foreign-key",
            ["roster", "sign", f"{t}/draft.json", "--home", f"{t}/outsider", "--out", f"{t}/o.json"],
            2,
            "not a lab key",
        ),
        (
            "draft-past-expiry",
            [
                "roster",
                "draft",
                "--out",
                f"{t}/d2.json",
                "--network-name",
                "n",
                "--lab",
                f"{t}/alpha.json",
                "--pause-weight",
                "1",
                "--resume-weight",
                "1",
                "--roster-threshold",
                "1",
                "--policy",
                str(POLICY),
                "--expires",
                "2001-01-01",
            ],
            2,
            "past",
        ),
        (
            "draft-quorum-too-high",
            [
                "roster",
                "draft",
                "--out",
                f"{t}/d3.json",
                "--network-name",
                "n",
                "--lab",
                f"{t}/alpha.json",
                "--pause-weight",
                "5",
                "--resume-weight",
                "1",
                "--roster-threshold",
                "1",
                "--policy",
                str(POLICY),
                "--expires",
                "2099-01-01",
            ],
            2,
            "exceeds",
        ),
        (
            "draft-bad-identity",
            [
                "roster",
                "draft",
                "--out",
                f"{t}/d4.json",
                "--network-name",
                "n",
                "--lab",
                f"{t}/draft.json",
                "--pause-weight",
                "1",
                "--resume-weight",
                "1",
                "--roster-threshold",
                "1",
                "--policy",
                str(POLICY),
                "--expires",
                "2099-01-01",
            ],
            2,
            "lacks",
        ),
        (
            "draft-missing-policy",
            [
                "roster",
                "draft",
                "--out",
                f"{t}/d5.json",
                "--network-name",
                "n",
                "--lab",
                f"{t}/alpha.json",
                "--pause-weight",
                "1",
                "--resume-weight",
                "1",
                "--roster-threshold",
                "1",
                "--policy",
                f"{t}/nope.yaml",
                "--expires",
                "2099-01-01",
            ],
            2,
            "cannot read",
        ),
        (
            "peers-add-bad-url",
            ["peers", "add", "--home", f"{t}/alpha", "--lab", "beta", "--url", "ftp://x"],
            2,
            "url",
        ),
        ("missing-required-option", ["roster", "show"], 2, "--home"),
    ]


CASE_IDS = [c[0] for c in _misuse_cases(Path("/x"))]


@pytest.fixture(scope="module")
def ceremony_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    ceremony(tmp)
    # A second, different draft signed by alpha, and a home whose key is in no roster.
    d = json.loads((tmp / "draft.json").read_text())
    d["network_name"] = "other"
    (tmp / "draft2.json").write_text(json.dumps(d))
    assert (
        main(
            [
                "roster",
                "sign",
                str(tmp / "draft2.json"),
                "--home",
                str(tmp / "alpha"),
                "--out",
                str(tmp / "other.json"),
            ]
        )
        == 0
    )
    assert main(["init", "--home", str(tmp / "outsider"), "--lab", "outsider"]) == 0
    return tmp


@pytest.mark.parametrize("case", CASE_IDS, ids=CASE_IDS)
def test_misuse_gives_a_clear_error_and_exit_code(ceremony_dir, case, capsys):
    _name, argv, code, message = next(c for c in _misuse_cases(ceremony_dir) if c[0] == case)
    capsys.readouterr()
    assert main(argv) == code
    captured = capsys.readouterr()
    assert message in (captured.err + captured.out).replace("\n", " ")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["init"],
        ["identity"],
        ["roster"],
        ["roster", "draft"],
        ["roster", "sign"],
        ["roster", "combine"],
        ["roster", "install"],
        ["roster", "show"],
        ["peers"],
        ["peers", "list"],
        ["peers", "add"],
        ["status"],
    ],
    ids=lambda a: "-".join(a) or "top",
)
def test_every_command_has_help(argv, capsys):
    assert main([*argv, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_console_script_end_to_end(tmp_path):
    exe = Path(sys.executable).parent / "tripwire"
    assert exe.exists()
    env = {**os.environ, "TW_PASS": "pass phrase", "COLUMNS": "200"}
    home = tmp_path / "h"
    r = subprocess.run(
        [str(exe), "init", "--home", str(home), "--lab", "alpha", "--passphrase-env", "TW_PASS"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [str(exe), "identity", "--home", str(home)], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["lab"] == "alpha"
    r = subprocess.run(
        [str(exe), "status", "--home", str(home)],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if k != "TW_PASS"},
        timeout=120,
    )
    assert r.returncode == 2 and "TW_PASS" in r.stderr


def test_status_shows_the_status_document_the_node_serves(sqlite_network, tmp_path, capsys):
    """`tripwire status` and GET /v1/status come from one builder: their shared part agrees."""
    from http_nodes import ThreadedNode

    from node.home.netsetup import observer_key

    alpha = sqlite_network[0]
    for i in range(2):
        alpha.publish("note", {"text": f"n{i}"})
    alpha.store.record_misbehaviour("beta", "unknown-key", "forged", url="http://b/v1/feeds/beta", lab="beta", seq=1)
    regulator = observer_key(tmp_path / "net", "regulator")
    with ThreadedNode(alpha) as node, node.client(regulator, "regulator") as c:
        served = c.status()
    capsys.readouterr()
    assert main(["status", "--home", str(alpha.path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["network"] == served.network
    assert shown["roster"] == served.roster.to_json()
    assert shown["heads"] == {lab: h.to_json() for lab, h in served.heads.items()} and shown["heads"]["alpha"]["seq"] == 2
    assert shown["equivocations"] == len(served.equivocations) == 0
    assert shown["misbehaviour"] == {p: m.to_json() for p, m in served.misbehaviour.items()}
    assert shown["misbehaviour"]["beta"]["total"] == 1
    assert shown["log_size"] == served.log_size == 2
