"""Node homes: layout, key protection, passphrases, refusal to overwrite, config overrides."""

from __future__ import annotations

import stat

import pytest

from node.errors import ConfigFileError, HomeExistsError, HomeNotFoundError
from node.home import NodeHome
from node.home.config import load_config, write_config
from node.store.store import _cpu_count
from protocol.errors import ConfigurationError, KeyFileError


def test_init_layout_and_reopen(tmp_path, db_url):
    home = tmp_path / "h"
    h = NodeHome.init(home, "alpha", database_url=db_url, endpoint="http://127.0.0.1:8711")
    assert (home / "node.toml").is_file()
    key = home / "keys" / "signing.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    ident = h.identity()
    assert ident == {
        "lab": "alpha",
        "keyid": h.key.keyid,
        "public_key": h.key.public_key.b64,
        "endpoint": "http://127.0.0.1:8711",
    }
    assert h.config.server.port == 8711
    h.close()
    with NodeHome.open(home) as again:
        assert again.key.keyid == ident["keyid"] and again.store.log_size() == 0


def test_init_refuses_existing_home(tmp_path):
    NodeHome.init(tmp_path / "h", "alpha").close()
    before = (tmp_path / "h" / "keys" / "signing.pem").read_bytes()
    with pytest.raises(HomeExistsError):
        NodeHome.init(tmp_path / "h", "alpha")
    assert (tmp_path / "h" / "keys" / "signing.pem").read_bytes() == before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lab_id": "Bad Lab"}, "lab id"),
        ({"lab_id": "alpha", "endpoint": "ftp://x"}, "http"),
        ({"lab_id": "alpha", "endpoint": "http://x:99999"}, "not a valid URL"),
        ({"lab_id": "alpha", "database_url": "mysql://x/y"}, "unsupported database"),
    ],
    ids=["bad-lab-id", "non-http-endpoint", "bad-port", "unsupported-database"],
)
def test_init_bad_arguments_leave_nothing(tmp_path, kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        NodeHome.init(tmp_path / "h", **kwargs)
    assert not (tmp_path / "h").exists()


def test_passphrase_from_environment(tmp_path, monkeypatch):
    NodeHome.init(tmp_path / "h", "alpha", passphrase="s3cret", passphrase_env="TW_PASS").close()
    assert b"ENCRYPTED" in (tmp_path / "h" / "keys" / "signing.pem").read_bytes()
    monkeypatch.delenv("TW_PASS", raising=False)
    with pytest.raises(KeyFileError, match="TW_PASS"):
        NodeHome.open(tmp_path / "h")
    monkeypatch.setenv("TW_PASS", "wrong")
    with pytest.raises(KeyFileError, match="passphrase"):
        NodeHome.open(tmp_path / "h")
    monkeypatch.setenv("TW_PASS", "s3cret")
    NodeHome.open(tmp_path / "h").close()
    assert "s3cret" not in (tmp_path / "h" / "node.toml").read_text()


def test_config_errors_and_env_override(tmp_path, monkeypatch):
    with pytest.raises(HomeNotFoundError):
        load_config(tmp_path)
    NodeHome.init(tmp_path / "h", "alpha").close()
    cfg = load_config(tmp_path / "h")
    assert (
        cfg.resolved_database_url(tmp_path / "h") == f"sqlite:///{(tmp_path / 'h' / 'tripwire.db').resolve()}"
    )
    monkeypatch.setenv("TRIPWIRE_SERVER__PORT", "8799")
    assert load_config(tmp_path / "h").server.port == 8799
    toml = tmp_path / "h" / "node.toml"
    toml.write_text("bogus = 1\n" + toml.read_text())
    with pytest.raises(ConfigFileError, match="bogus"):
        load_config(tmp_path / "h")
    toml.write_text("lab = ")
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_config(tmp_path / "h")
    write_config(tmp_path / "h", cfg.model_copy(update={"lab": "alpha"}))
    assert load_config(tmp_path / "h").lab == "alpha"


@pytest.mark.parametrize(
    ("env", "setting", "attribute", "default", "value"),
    [
        ("TRIPWIRE_SYNC__MISBEHAVIOUR_KEPT", "misbehaviour_kept", "misbehaviour_per_peer", 1000, 7),
        ("TRIPWIRE_VERIFY_THREADS", "verify_threads", "verify_workers", _cpu_count(), 3),
    ],
    ids=["misbehaviour_kept", "verify_threads"],
)
def test_store_settings_come_from_config(tmp_path, monkeypatch, env, setting, attribute, default, value):
    NodeHome.init(tmp_path / "h", "alpha").close()
    with NodeHome.open(tmp_path / "h") as h:
        assert getattr(h.store, attribute) == default
    monkeypatch.setenv(env, str(value))
    with NodeHome.open(tmp_path / "h") as h:
        assert getattr(h.store, attribute) == value
    monkeypatch.setenv(env, "0")
    with pytest.raises(ConfigFileError, match=setting):
        NodeHome.open(tmp_path / "h")


def test_network_peers_and_publish(network):
    alpha, beta, gamma = network
    assert {p.lab for p in alpha.peers()} == {"beta", "gamma"}
    assert {p.url for p in alpha.peers()} == {beta.endpoint(), gamma.endpoint()}
    eid = alpha.publish("note", {"text": "hello"})
    assert alpha.store.heads()["alpha"].entry_id == eid
    chain = alpha.store.roster_chain()
    assert [r.observer("regulator") is not None for r in [chain.current.roster]] == [True]


def test_publish_with_a_key_not_in_the_roster(network, tmp_path):
    from protocol.keys import SigningKey

    alpha = network[0]
    with pytest.raises(ConfigurationError, match="roster key"):
        alpha.store.publish("alpha", SigningKey.generate(), "note", {"text": "x"})
