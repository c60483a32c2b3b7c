"""A node home: ``node.toml``, the lab's signing key and its database, opened together.

Layout::

    DIR/node.toml              settings (never secrets)
    DIR/keys/signing.pem       PKCS#8 PEM Ed25519 key, mode 0600, directory 0700
    DIR/tripwire.db            SQLite database (default; or PostgreSQL via database_url)
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from node.errors import ConfigFileError, HomeExistsError, NoRosterError
from node.home.config import CONFIG_FILE, NodeConfig, PeerConfig, ServerConfig, load_config, write_config
from node.home.tls import TLSFiles, load_tls
from node.store import Store
from protocol.entries import Model
from protocol.errors import ConfigurationError, KeyFileError
from protocol.keys import SigningKey

log = logging.getLogger(__name__)

KEY_FILE = "keys/signing.pem"
LAB_RE = re.compile(r"^[a-z0-9-]{1,64}$")


def _passphrase_bytes(p: str | bytes | None) -> bytes | None:
    if p is None or p == "" or p == b"":
        return None
    return p.encode("utf-8") if isinstance(p, str) else p


def write_key_file(path: Path, key: SigningKey, passphrase: str | bytes | None = None) -> None:
    """Write a PEM key with mode 0600 in a 0700 directory, never over an existing file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    # O_EXCL: never overwrite a key; the mode is set at creation so it is never world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.to_pem(_passphrase_bytes(passphrase)))


def read_key_file(path: Path, passphrase: str | bytes | None = None) -> SigningKey:
    try:
        pem = path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read key file {path}: {e.strerror or e}") from e
    check_key_file_mode(path)
    return SigningKey.from_pem(pem, _passphrase_bytes(passphrase))


def check_key_file_mode(path: Path) -> None:
    """Refuse a signing key that others on the machine could read or change.

    A key readable by its group or by everyone may already be copied: signing with it would
    put this lab's name on whatever else is signed with the copy. Raise rather than warn, so
    the operator fixes the mode (and considers rotating the key) before the node signs.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        who = "everyone" if mode & 0o007 else "its group"
        raise KeyFileError(
            f"signing key {path} is accessible to {who} (mode {mode:04o}); refusing to use it. "
            f"Run: chmod 600 {path} (and rotate the key if others may have read it)"
        )


def _private_file(path: Path) -> None:
    """Create ``path`` (if missing) with mode 0600, and take group and world access away
    from an existing one (a database holds everything the node knows and signs)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
        os.close(fd)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("database file %s was accessible to others (mode %04o); setting 0600", path, mode)
            os.chmod(path, mode & 0o700 | 0o600)
    except OSError as e:
        raise ConfigurationError(f"cannot create or protect {path}: {e.strerror or e}") from e


def _protect_sqlite(url: str) -> None:
    """Mode 0600 for an SQLite database file and its journal files (SQLite gives the ``-wal``
    and ``-shm`` files the database file's mode when it creates them)."""
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:
        return  # Store.open reports the bad URL
    db = u.database or ""
    if u.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return
    path = Path(db)
    if not path.parent.is_dir():
        return  # Store.open names the missing directory
    _private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            _private_file(extra)


def _server_for(endpoint: str | None, port: int | None) -> ServerConfig:
    if endpoint is None:
        return ServerConfig() if port is None else ServerConfig(port=port)
    try:
        parts = urlsplit(endpoint)
        url_port = parts.port
    except ValueError as e:
        raise ConfigurationError(f"endpoint {endpoint!r} is not a valid URL: {e}") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"endpoint {endpoint!r} is not an http(s) URL")
    chosen = port or url_port or (443 if parts.scheme == "https" else 80)
    return ServerConfig(port=chosen, public_url=endpoint.rstrip("/"))


class NodeHome:
    """An opened node home: configuration, signing key and store."""

    def __init__(
        self, path: Path, config: NodeConfig, key: SigningKey, store: Store, tls: TLSFiles | None = None
    ) -> None:
        self.path = path
        self.config = config
        self.key = key
        self.store = store
        #: The checked ``[tls]`` files (None: the node speaks plain HTTP), loaded once on open;
        #: the server and the clients both use these.
        self.tls = tls

    def __repr__(self) -> str:
        return f"NodeHome({str(self.path)!r}, lab={self.lab!r})"

    @property
    def lab(self) -> str:
        return self.config.lab

    # --- creating and opening ---------------------------------------------------------

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        lab_id: str,
        *,
        passphrase: str | bytes | None = None,
        database_url: str | None = None,
        endpoint: str | None = None,
        passphrase_env: str | None = None,
        key: SigningKey | None = None,
        port: int | None = None,
    ) -> NodeHome:
        """Create a home: signing key, ``node.toml`` and the migrated database.

        Refuses a directory that already holds a home or a key. ``passphrase_env`` is only
        recorded (the name of the variable to read the passphrase from on open).
        """
        home = Path(path)
        if not LAB_RE.fullmatch(lab_id or ""):
            raise ConfigurationError(f"lab id {lab_id!r} must be 1-64 characters of a-z, 0-9 and '-'")
        if (home / CONFIG_FILE).exists() or (home / KEY_FILE).exists():
            raise HomeExistsError(f"{home} already holds a node home; refusing to overwrite it")
        if home.exists() and not home.is_dir():
            raise ConfigurationError(f"{home} exists and is not a directory")
        try:
            cfg = NodeConfig.model_validate(
                {
                    "lab": lab_id,
                    "database_url": database_url or NodeConfig.model_fields["database_url"].default,
                    "passphrase_env": passphrase_env,
                    "server": _server_for(endpoint, port).model_dump(),
                }
            )
        except ValidationError as e:
            raise ConfigFileError(f"invalid settings: {e.errors()[0]['msg']}") from e
        created = not home.exists()
        home.mkdir(parents=True, exist_ok=True)
        store: Store | None = None
        try:
            _protect_sqlite(cfg.resolved_database_url(home))
            store = Store.open(cfg.resolved_database_url(home))
            signing = key or SigningKey.generate()
            write_key_file(cfg.key_path(home), signing, passphrase)
            # node.toml last: its presence is what marks a complete home.
            write_config(home, cfg)
        except BaseException:
            if store is not None:
                store.close()
            if created:
                shutil.rmtree(home, ignore_errors=True)
            raise
        return cls(home, cfg, signing, store)

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], passphrase: str | bytes | None = None, *, migrate: bool = True
    ) -> NodeHome:
        """Open an existing home (the passphrase defaults to ``$passphrase_env``)."""
        home = Path(path)
        cfg = load_config(home)
        # A node with an unusable certificate refuses to open, before its database is touched.
        tls = load_tls(cfg.tls, home) if cfg.tls is not None else None
        if passphrase is None and cfg.passphrase_env:
            passphrase = os.environ.get(cfg.passphrase_env)
            if passphrase is None:
                raise KeyFileError(
                    f"the key of {home} is encrypted: set the environment variable {cfg.passphrase_env} "
                    "to its passphrase"
                )
        key = read_key_file(cfg.key_path(home), passphrase)
        _protect_sqlite(cfg.resolved_database_url(home))
        store = Store.open(cfg.resolved_database_url(home), migrate=migrate)
        store.misbehaviour_per_peer = cfg.sync.misbehaviour_kept
        store.future_skew_s = cfg.sync.future_skew_s
        if cfg.verify_threads is not None:
            store.verify_workers = cfg.verify_threads
        return cls(home, cfg, key, store, tls)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> NodeHome:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- identity and peers -----------------------------------------------------------

    def endpoint(self) -> str:
        return self.config.endpoint()

    def identity(self) -> dict[str, Any]:
        """Public identity for the roster ceremony: lab, keyid, public key, endpoint."""
        return {
            "lab": self.lab,
            "keyid": self.key.keyid,
            "public_key": self.key.public_key.b64,
            "endpoint": self.endpoint(),
        }

    def peers(self) -> list[PeerConfig]:
        """Peers to sync with: the roster endpoints of the other labs, overridden by node.toml."""
        out: dict[str, PeerConfig] = {}
        if self.store.has_roster():
            for lab in self.store.roster_chain().current.roster.labs:
                if lab.id != self.lab:
                    out[lab.id] = PeerConfig(lab=lab.id, url=lab.endpoint)
        for p in self.config.peers:
            if p.lab != self.lab:
                out[p.lab] = p
        return list(out.values())

    def add_peer(self, lab: str, url: str) -> PeerConfig:
        """Add (or replace) the peer ``lab`` at ``url`` in node.toml; a bad lab id or URL, or
        this node's own lab, is refused and nothing is written."""
        try:
            peer = PeerConfig(lab=lab, url=url)
        except ValidationError as e:
            first = e.errors()[0]
            raise ConfigurationError(f"invalid peer: {first['loc'][0]}: {first['msg']}") from e
        if lab == self.lab:
            raise ConfigurationError(f"{lab} is this node's own lab")
        peers = [p for p in self.config.peers if p.lab != lab] + [peer]
        self.save_config(self.config.model_copy(update={"peers": peers}))
        return peer

    def save_config(self, cfg: NodeConfig) -> None:
        """Write ``cfg`` as node.toml; a changed ``[tls]`` section is checked first (nothing is
        written if its files are unusable)."""
        tls = self.tls
        if cfg.tls != self.config.tls:
            tls = load_tls(cfg.tls, self.path) if cfg.tls is not None else None
        write_config(self.path, cfg)
        self.config, self.tls = cfg, tls

    # --- own feed ---------------------------------------------------------------------

    def check_can_publish(self) -> None:
        """Refuse now, before any work, what :meth:`publish` would refuse later: no roster
        installed, this lab absent from the current roster, or this home's key not one of
        the lab's roster keys."""
        if not self.store.has_roster():
            raise NoRosterError(f"no roster is installed in {self.path}: this node cannot publish yet")
        roster = self.store.roster_chain().current.roster
        lab = next((m for m in roster.labs if m.id == self.lab), None)
        if lab is None:
            raise ConfigurationError(f"lab {self.lab!r} is not a member of the installed roster: it cannot publish")
        if self.key.keyid not in {k.keyid for k in lab.keys}:
            raise ConfigurationError(
                f"this home's key {self.key.keyid[:16]}... is not a roster key of lab {self.lab!r}: it cannot publish"
            )

    def publish(self, kind: str, body: dict[str, Any] | Model, now: datetime | None = None) -> str:
        """Sign the next entry of this lab's feed and store it; returns its entry_id.

        A running server pushes it to peers (it listens on the store, or pulls it in sync).
        """
        return self.store.publish(self.lab, self.key, kind, body, now=now).entry_id


__all__ = ["KEY_FILE", "NodeHome", "check_key_file_mode", "read_key_file", "write_key_file"]
