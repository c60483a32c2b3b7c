"""Node configuration: ``DIR/node.toml``, overridable by ``TRIPWIRE_*`` environment variables.

The file is the operator's record of how the node runs; secrets never go in it (the key
passphrase is read from the environment variable named by ``passphrase_env``). Nested
settings are overridden with a double underscore, e.g. ``TRIPWIRE_SERVER__PORT=8801``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from node.errors import ConfigFileError, HomeNotFoundError

CONFIG_FILE = "node.toml"
LabId = Annotated[str, Field(pattern=r"^[a-z0-9-]{1,64}$")]


class _Section(BaseModel):
    # Unknown keys are refused so that a typo in node.toml is an error, not a silent default.
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    """Interface the HTTP API binds to."""
    port: Annotated[int, Field(ge=1, le=65535)] = 8700
    """TCP port of the HTTP API."""
    public_url: str | None = None
    """URL peers reach this node at (the roster endpoint); defaults to http://host:port."""
    max_body_bytes: Annotated[int, Field(ge=1024)] = 4_194_304
    """Request bodies above this size are answered 413 (spec: HTTP)."""
    rate_limit_per_minute: Annotated[int, Field(ge=1)] = 600
    """Requests per minute allowed per authenticated caller."""
    ingest_bytes_per_minute: Annotated[int, Field(ge=65_536)] = 33_554_432
    """Bytes of request bodies one member may push per minute (a token bucket whose burst
    holds two maximal bodies): a lab flooding the node with large entries is slowed with 429
    and Retry-After, so status polls and honest peers keep their share of the node. Peers
    catch up by pulling, which this node paces itself."""
    clock_skew_s: Annotated[int, Field(ge=0)] = 300
    """Tolerated difference between a signed request's created time and ours."""
    authorities: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9.\-\[\]:]{1,300}$")]] = []
    """Other ``host[:port]`` names peers reach this node at (the public URL's and the bind
    address's are always accepted); a signed request must name one of them (@authority)."""
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    """Open connections allowed in all; more are answered 503 and closed."""
    max_connections_per_client: Annotated[int, Field(ge=1, le=1_000_000)] = 64
    """Open connections allowed from one client address (behind a reverse proxy every
    connection comes from the proxy: raise it to ``max_connections`` there)."""
    header_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """Seconds a client has to send a request's line and headers; slower ones are closed."""
    body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Seconds a client has to send a request's body once its headers arrived."""


class PeerConfig(_Section):
    lab: LabId
    """Roster lab id of the peer."""
    url: Annotated[str, Field(pattern=r"^https?://\S+$")]
    """Base URL of the peer's node."""


class SyncConfig(_Section):
    interval_s: Annotated[float, Field(gt=0)] = 2.0
    """Seconds between anti-entropy rounds."""
    timeout_s: Annotated[float, Field(gt=0)] = 5.0
    """Per-request timeout towards peers."""
    batch: Annotated[int, Field(ge=1, le=10_000)] = 500
    """Entries fetched or pushed per request."""
    max_backoff_s: Annotated[float, Field(gt=0)] = 60.0
    """Upper bound of the per-peer exponential backoff."""
    misbehaviour_kept: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    """Misbehaviour records kept per peer (older ones are pruned; the total still counts them)."""
    future_skew_s: Annotated[int, Field(ge=1, le=86_400)] = 300
    """Seconds an entry's issued_at may be ahead of this node's clock; later-dated entries are
    refused (future-dated) and taken when sync offers them again (spec §4.2 step 7)."""


class TLSConfig(_Section):
    """Mutual TLS between nodes (see the operator guide, TLS); paths resolve against the home."""

    cert: Annotated[str, Field(min_length=1)]
    """PEM certificate chain of this node (its certificate first), served and presented to peers."""
    key: Annotated[str, Field(min_length=1)]
    """PEM private key of ``cert`` (unencrypted, mode 0600)."""
    ca: Annotated[str, Field(min_length=1)]
    """PEM bundle trusted for peers: the network's CA, or each peer's own certificate."""
    require_client_cert: bool = True
    """Refuse TLS clients without a certificate from ``ca`` (off: any client may connect,
    and requests must still be signed with a roster key)."""


class NodeConfig(BaseSettings):
    """Settings of one node home (``node.toml``)."""

    model_config = SettingsConfigDict(env_prefix="TRIPWIRE_", env_nested_delimiter="__", extra="ignore")

    lab: LabId
    """This node's lab id in the roster."""
    database_url: str = "sqlite:///tripwire.db"
    """SQLAlchemy URL; relative SQLite paths resolve against the home directory."""
    key_file: str = "keys/signing.pem"
    """PKCS#8 PEM signing key, relative to the home directory."""
    passphrase_env: str | None = None
    """Name of the environment variable that holds the key passphrase (never the passphrase)."""
    verify_threads: Annotated[int, Field(ge=1, le=64)] | None = None
    """Threads that check a batch's signatures in parallel (default: one per core, at most 8)."""
    server: ServerConfig = ServerConfig()
    peers: list[PeerConfig] = []
    """Extra or overriding peers; by default the roster endpoints of the other labs."""
    sync: SyncConfig = SyncConfig()
    tls: TLSConfig | None = None
    """Serve HTTPS and use TLS towards https:// peers (absent: plain HTTP)."""
    votes: dict[str, Any] = {}
    """Automatic voting rule (filled in by the pause coordinator)."""
    gate: dict[str, Any] = {}
    """Training gate settings."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (which arrives as init kwargs): operators and
        # containers adjust a node without editing node.toml.
        return (env_settings, init_settings)

    def resolved_database_url(self, home: str | os.PathLike[str]) -> str:
        """The database URL with a relative SQLite path made absolute against ``home``."""
        return resolve_database_url(self.database_url, home)

    def key_path(self, home: str | os.PathLike[str]) -> Path:
        p = Path(self.key_file)
        return p if p.is_absolute() else Path(home) / p

    def endpoint(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return self.server.public_url or f"{scheme}://{self.server.host}:{self.server.port}"

    @model_validator(mode="after")
    def _public_url_scheme(self) -> NodeConfig:
        # With [tls] the node serves only HTTPS: an http:// public URL would send the
        # training gate and anyone reading `tripwire identity` to a port that answers no HTTP.
        if self.tls is not None and (self.server.public_url or "").startswith("http://"):
            raise ValueError(
                f"server.public_url {self.server.public_url} must be https:// when tls is configured "
                "(the node then serves only HTTPS)"
            )
        return self


def resolve_database_url(url: str, home: str | os.PathLike[str]) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith(("file:", ":")):
            return prefix + str((Path(home) / rest).resolve())
    return url


def _explain(e: ValidationError) -> str:
    parts = []
    for err in e.errors(include_url=False)[:5]:
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{'.'.join(str(p) for p in err['loc'])}: {msg}" if err["loc"] else msg)
    return "; ".join(parts)


def load_config(home: str | os.PathLike[str]) -> NodeConfig:
    """Read ``home/node.toml`` (with ``TRIPWIRE_*`` overrides); raise a ConfigurationError.

    Only the file is read: the ``[tls]`` files it names are checked when the home is opened
    (:func:`node.home.tls.load_tls`), so that a node with an unusable certificate refuses to
    start, while the command that creates them reads the same settings.
    """
    path = Path(home) / CONFIG_FILE
    if not path.is_file():
        raise HomeNotFoundError(f"{home} is not a node home: {path} does not exist (run `tripwire init`)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigFileError(f"cannot read {path}: {e}") from e
    unknown = sorted(set(data) - set(NodeConfig.model_fields))
    if unknown:
        raise ConfigFileError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    try:
        cfg = NodeConfig(**data)
    except ValidationError as e:
        raise ConfigFileError(f"{path}: {_explain(e)}") from e
    return cfg


def config_to_toml(cfg: NodeConfig) -> str:
    data = cfg.model_dump(mode="json", exclude_none=True)
    return tomli_w.dumps(data)


def write_config(home: str | os.PathLike[str], cfg: NodeConfig) -> Path:
    """Write ``home/node.toml`` atomically (write a temporary file, then rename)."""
    path = Path(home) / CONFIG_FILE
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(
        "# Tripwire node configuration. Secrets never go here: the key passphrase is read\n"
        "# from the environment variable named by passphrase_env.\n" + config_to_toml(cfg),
        encoding="utf-8",
    )
    os.replace(tmp, path)
    return path


__all__ = [
    "CONFIG_FILE",
    "NodeConfig",
    "PeerConfig",
    "ServerConfig",
    "SyncConfig",
    "TLSConfig",
    "load_config",
    "resolve_database_url",
    "write_config",
]
