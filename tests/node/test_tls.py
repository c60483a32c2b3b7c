"""Mutual TLS between nodes: real uvicorn on 127.0.0.1 with throwaway certificates.

A test CA (and a second, untrusted one) issues the nodes' certificates; the pinned
self-signed flow goes through `tripwire tls selfsign` and two `tripwire serve` processes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from http_nodes import ROOT, ThreadedNode, notes, wait_until

from node.cli import main
from node.errors import ConfigFileError, TLSConfigError
from node.home import NodeHome
from node.home.config import PeerConfig, TLSConfig, load_config
from node.home.netsetup import create_network
from node.home.tls import load_tls
from node.net.client import PeerClient, PeerTLSError, PeerUnavailableError
from node.net.process import ServeProcess, free_ports
from node.net.sync import Syncer
from node.net.tls import client_context_for

NOW = datetime.now(UTC)


# --- a throwaway PKI ---------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


class CA:
    """A test certificate authority that issues node certificates into a directory."""

    def __init__(self, name: str, *, not_after: datetime | None = None) -> None:
        self.key = _key()
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=2))
            .not_valid_after(not_after or NOW + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self, directory: Path, name: str, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), *,
        not_before: datetime | None = None, not_after: datetime | None = None,
    ) -> tuple[Path, Path]:
        """Write ``name.crt`` and ``name.key`` (a leaf for server and client use) into ``directory``."""
        key = _key()
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - timedelta(days=1))
            .not_valid_after(not_after or NOW + timedelta(days=10))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        crt, kf = directory / f"{name}.crt", directory / f"{name}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        kf.write_bytes(_pem_key(key))
        kf.chmod(0o600)
        return crt, kf


def client_context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def use_tls(home: NodeHome, *, cert: str, key: str, ca: str, port: int,
            peers: dict[str, int] | None = None, **extra: object) -> None:
    """Configure [tls] in ``home``'s node.toml, its public URL and its peers as https://."""
    home.save_config(home.config.model_copy(update={
        "tls": TLSConfig(cert=cert, key=key, ca=ca, **extra),  # type: ignore[arg-type]
        "server": home.config.server.model_copy(update={"public_url": f"https://127.0.0.1:{port}"}),
        "peers": [PeerConfig(lab=lab, url=f"https://127.0.0.1:{p}") for lab, p in (peers or {}).items()],
    }))


@dataclass
class Pair:
    a: NodeHome
    b: NodeHome
    ports: list[int]
    ca: CA
    rogue: CA
    root: Path

    @property
    def b_url(self) -> str:
        return f"https://127.0.0.1:{self.ports[1]}"

    def reopen(self) -> None:
        for h in (self.a, self.b):
            h.close()
        self.a, self.b = NodeHome.open(self.root / "a"), NodeHome.open(self.root / "b")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    """Labs a and b on one network, each with a certificate from one CA, talking https://."""
    ports = free_ports(2)
    a, b = create_network(tmp_path / "net", ["a", "b"], ports=ports)
    ca, rogue = CA("tripwire test network CA"), CA("some other CA")
    for h, port, other in ((a, ports[0], {"b": ports[1]}), (b, ports[1], {"a": ports[0]})):
        (h.path / "tls").mkdir()
        (h.path / "tls" / "ca.pem").write_bytes(ca.pem)
        ca.issue(h.path / "tls", "node")
        use_tls(h, cert="tls/node.crt", key="tls/node.key", ca="tls/ca.pem", port=port, peers=other)
    p = Pair(a, b, ports, ca, rogue, tmp_path / "net")
    p.reopen()  # the homes as `tripwire` opens them: node.toml read and its [tls] checked
    yield p
    p.a.close()
    p.b.close()


def raw_exchange(port: int, ctx: ssl.SSLContext) -> bytes | str:
    """One HTTP/1.1 request over a bare TLS socket: the answer's bytes, or the TLS error."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                return data
        except (ssl.SSLError, ConnectionError) as e:
            return f"{type(e).__name__}: {e}"


# --- sync over mutual TLS ------------------------------------------------------------------------


@pytest.mark.slow
def test_two_serve_processes_sync_over_mutual_tls_with_pinned_selfsigned_certificates(tmp_path: Path) -> None:
    ports = free_ports(2)
    homes = create_network(tmp_path / "net", ["a", "b"], ports=ports)
    for h in homes:
        h.store.ingest(notes(h, 5))
        h.close()
    certs = []
    for lab in ("a", "b"):
        # The operator's flow: a self-signed certificate per node, every lab's in every bundle.
        assert main(["tls", "selfsign", "--home", str(tmp_path / "net" / lab), "--host", "localhost"]) == 0
        certs.append((tmp_path / "net" / lab / "tls" / "cert.pem").read_bytes())
    for lab, port, other in (("a", ports[0], {"b": ports[1]}), ("b", ports[1], {"a": ports[0]})):
        with NodeHome.open(tmp_path / "net" / lab) as h:
            (h.path / "tls" / "peers.pem").write_bytes(b"".join(certs))
            use_tls(h, cert="tls/cert.pem", key="tls/key.pem", ca="tls/peers.pem", port=port, peers=other)
    env = {"PYTHONPATH": str(ROOT), "TRIPWIRE_SYNC__INTERVAL_S": "0.3", "TRIPWIRE_SYNC__MAX_BACKOFF_S": "1"}
    procs: list[ServeProcess] = []
    try:
        for lab, port in zip(("a", "b"), ports, strict=True):
            with NodeHome.open(tmp_path / "net" / lab) as h:
                probe = client_context_for(h)
            # Python 3.13 verifies strictly by default: the self-signed certificates pass that too.
            assert probe is not None
            probe.verify_flags |= ssl.VERIFY_X509_STRICT
            procs.append(ServeProcess(tmp_path / "net" / lab, port, env=env, tls=probe).start(timeout=60))
        a, b = (NodeHome.open(tmp_path / "net" / lab) for lab in ("a", "b"))
        try:
            want = {"a": 5, "b": 5}
            wait_until(lambda: {k: v.seq for k, v in a.store.heads().items()} == want
                       and {k: v.seq for k, v in b.store.heads().items()} == want, 60, 0.2, "sync over mTLS")
            a.publish("note", {"text": "after start"})  # another process on a's home: a pushes it
            wait_until(lambda: b.store.heads()["a"].seq == 6, 30, 0.1, "push over mTLS")
            with PeerClient(procs[1].url, a.key, "a", tls=client_context_for(a)) as c:
                peers = c.status().peers
            assert peers["a"].ok and peers["a"].url == f"https://127.0.0.1:{ports[0]}"
        finally:
            a.close()
            b.close()
    finally:
        for p in procs:
            p.stop()
    for p in procs:
        assert "mutual TLS" in p.output() and "Traceback" not in p.output()


def test_sync_once_over_mutual_tls_in_process(pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    pair.a.store.ingest(notes(pair.a, 4))
    pair.b.store.ingest(notes(pair.b, 3))
    with ThreadedNode(pair.b, sync=False):
        assert main(["sync", "--once", "--home", str(pair.a.path)]) == 0
        assert "b: fetched 3, pushed 4" in capsys.readouterr().out
        assert pair.b.store.heads()["a"].seq == 4
        # The same through the API, with the clients sync builds.
        pair.a.store.ingest(notes(pair.a, 2, start=pair.a.store.heads()["a"]))
        summary = asyncio.run(Syncer(pair.a).sync_once())
    assert summary == {"b": {"fetched": 0, "pushed": 2, "ok": True}}


def test_request_signatures_stay_required_over_mutual_tls(pair: Pair) -> None:
    ctx = client_context_for(pair.a)
    with ThreadedNode(pair.b, sync=False):
        assert httpx.get(pair.b_url + "/healthz", verify=ctx).status_code == 200
        r = httpx.get(pair.b_url + "/v1/heads", verify=ctx)
        assert r.status_code == 401 and r.json()["code"] == "unsigned-request"
        with PeerClient(pair.b_url, pair.a.key, "a", tls=ctx) as c:
            assert c.heads() == {}


# --- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize(
    "client", ["network-ca-certificate", "no-certificate", "other-ca-certificate", "expired-certificate"]
)
def test_server_refuses_clients_without_a_valid_certificate_at_the_tls_layer(
    pair: Pair, client: str, version: ssl.TLSVersion
) -> None:
    d = pair.root / "clients"
    cert = key = None
    if client == "network-ca-certificate":
        cert, key = pair.ca.issue(d, "good")
    elif client == "other-ca-certificate":
        cert, key = pair.rogue.issue(d, "rogue")
    elif client == "expired-certificate":
        cert, key = pair.ca.issue(d, "old", not_before=NOW - timedelta(days=20), not_after=NOW - timedelta(days=1))
    ctx = client_context(pair.b.path / "tls" / "ca.pem", cert, key)
    ctx.minimum_version = ctx.maximum_version = version
    with ThreadedNode(pair.b, sync=False):
        answer = raw_exchange(pair.ports[1], ctx)
        if client == "network-ca-certificate":
            assert isinstance(answer, bytes) and answer.startswith(b"HTTP/1.1 200")
            return
        # Not one byte of HTTP comes back: the handshake (TLS 1.2) or the first read after it
        # (TLS 1.3, where the server checks the client's certificate last) ends the connection.
        assert not (isinstance(answer, bytes) and b"HTTP/" in answer), answer
        with pytest.raises(PeerUnavailableError, match="did not accept this node's") as e:
            with PeerClient(pair.b_url, pair.a.key, "a", tls=ctx) as c:
                c.heads()
        if version == ssl.TLSVersion.TLSv1_2:
            assert isinstance(e.value, PeerTLSError)


@pytest.mark.parametrize("defect", ["other-ca", "wrong-host-name"])
def test_client_refuses_a_server_certificate_it_does_not_trust(
    pair: Pair, defect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if defect == "other-ca":
        pair.rogue.issue(pair.b.path / "tls", "served")
    else:
        pair.ca.issue(pair.b.path / "tls", "served", hosts=("nodes.example",))
    use_tls(pair.b, cert="tls/served.crt", key="tls/served.key", ca="tls/ca.pem", port=pair.ports[1])
    pair.reopen()
    pair.a.store.ingest(notes(pair.a, 2))
    with ThreadedNode(pair.b, sync=False):
        with pytest.raises(PeerTLSError, match="the peer's certificate is not trusted") as e:
            with PeerClient(pair.b_url, pair.a.key, "a", tls=client_context_for(pair.a)) as c:
                c.heads()
        detail = "unable to get local issuer certificate" if defect == "other-ca" else "IP address mismatch"
        assert detail in str(e.value)
        assert main(["sync", "--once", "--home", str(pair.a.path)]) == 4
        out = capsys.readouterr().out
        assert "peer-tls" in out and "not trusted" in out
    assert "a" not in pair.b.store.heads()  # nothing was sent to the untrusted server


def test_without_required_client_certificates_tls_clients_connect_but_requests_stay_signed(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIPWIRE_TLS__REQUIRE_CLIENT_CERT", "false")
    pair.reopen()
    assert pair.b.config.tls is not None and not pair.b.config.tls.require_client_cert
    anonymous = client_context(pair.b.path / "tls" / "ca.pem")
    with ThreadedNode(pair.b, sync=False):
        assert httpx.get(pair.b_url + "/healthz", verify=anonymous).status_code == 200
        assert httpx.get(pair.b_url + "/v1/heads", verify=anonymous).status_code == 401
        with PeerClient(pair.b_url, pair.a.key, "a", tls=anonymous) as c:
            assert c.heads() == {}


# --- configuration -------------------------------------------------------------------------------


def _write_toml(home: Path, tls: str, server: str = "") -> None:
    text = (home / "node.toml").read_text()
    text = text.split("[tls]")[0].rstrip() + "\n"
    (home / "node.toml").write_text(text + server + "\n[tls]\n" + tls)


def _case(home: Path, ca: CA, defect: str) -> str:
    """Break the [tls] setup of ``home`` as named; returns the [tls] TOML to load."""
    tls = home / "tls"
    std = 'cert = "tls/node.crt"\nkey = "tls/node.key"\nca = "tls/ca.pem"\n'
    if defect == "missing-cert-file":
        (tls / "node.crt").unlink()
    elif defect == "unreadable-cert":
        (tls / "node.crt").unlink()
        (tls / "node.crt").mkdir()
    elif defect == "cert-not-pem":
        (tls / "node.crt").write_text("not a certificate\n")
    elif defect == "key-not-pem":
        (tls / "node.key").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    elif defect == "encrypted-key":
        (tls / "node.key").write_bytes(_pem_key(_key(), b"secret"))
    elif defect == "key-of-another-certificate":
        (tls / "node.key").write_bytes(_pem_key(_key()))
    elif defect == "expired-cert":
        ca.issue(tls, "node", not_before=NOW - timedelta(days=9), not_after=NOW - timedelta(hours=1))
    elif defect == "cert-not-yet-valid":
        ca.issue(tls, "node", not_before=NOW + timedelta(days=1), not_after=NOW + timedelta(days=9))
    elif defect == "ca-not-pem":
        (tls / "ca.pem").write_text("")
    elif defect == "ca-all-expired":
        (tls / "ca.pem").write_bytes(CA("old", not_after=NOW - timedelta(hours=1)).pem)
    elif defect == "missing-ca-setting":
        return 'cert = "tls/node.crt"\nkey = "tls/node.key"\n'
    elif defect == "unknown-setting":
        return std + 'certfile = "tls/node.crt"\n'
    return std


CONFIG_DEFECTS = [
    ("missing-cert-file", TLSConfigError, r"tls\.cert: .*node\.crt does not exist"),
    ("unreadable-cert", TLSConfigError, r"tls\.cert: cannot read .*node\.crt"),
    ("cert-not-pem", TLSConfigError, r"tls\.cert: .*node\.crt holds no PEM certificate"),
    ("key-not-pem", TLSConfigError, r"tls\.key: .*node\.key is not a PEM private key"),
    ("encrypted-key", TLSConfigError, r"tls\.key: .*node\.key is encrypted"),
    ("key-of-another-certificate", TLSConfigError, r"tls\.key: .*node\.key does not match the certificate"),
    ("expired-cert", TLSConfigError, r"tls\.cert: .*CN=node.* expired on .*issue a new certificate"),
    ("cert-not-yet-valid", TLSConfigError, r"tls\.cert: .* is not valid before .*clock"),
    ("ca-not-pem", TLSConfigError, r"tls\.ca: .*ca\.pem holds no PEM certificate"),
    ("ca-all-expired", TLSConfigError, r"tls\.ca: every certificate in .*ca\.pem has expired"),
    ("missing-ca-setting", ConfigFileError, r"tls\.ca: Field required"),
    ("unknown-setting", ConfigFileError, r"tls\.certfile: Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("defect", "error", "message"), CONFIG_DEFECTS, ids=[c[0] for c in CONFIG_DEFECTS])
def test_bad_tls_configuration_is_refused_on_open_with_the_problem_named(
    tmp_path: Path, defect: str, error: type[Exception], message: str
) -> None:
    (h,) = create_network(tmp_path / "net", ["a"], ports=free_ports(1))
    h.close()
    ca = CA("test CA")
    (h.path / "tls").mkdir()
    (h.path / "tls" / "ca.pem").write_bytes(ca.pem)
    ca.issue(h.path / "tls", "node")
    toml = h.path / "node.toml"
    toml.write_text(toml.read_text().replace('public_url = "http://', 'public_url = "https://'))
    _write_toml(h.path, 'cert = "tls/node.crt"\nkey = "tls/node.key"\nca = "tls/ca.pem"\n')
    with NodeHome.open(h.path) as intact:  # the intact setup opens, its files checked once
        assert intact.tls is not None and intact.tls.cert == h.path / "tls" / "node.crt"
    _write_toml(h.path, _case(h.path, ca, defect))
    if error is TLSConfigError:
        # Reading node.toml touches no certificate: the files are checked when the home opens.
        assert load_config(h.path).tls is not None
    else:
        with pytest.raises(error, match=message):
            load_config(h.path)
    with pytest.raises(error, match=message):
        NodeHome.open(h.path)


def test_serve_with_a_bad_tls_file_exits_2_naming_it(pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    (pair.b.path / "tls" / "node.key").write_bytes(_pem_key(_key()))
    assert main(["serve", "--home", str(pair.b.path), "--port", str(pair.ports[1])]) == 2
    err = capsys.readouterr().err
    assert "does not match the certificate" in err and "tls-config" in err


def test_http_public_url_with_tls_is_refused(pair: Pair) -> None:
    text = (pair.a.path / "node.toml").read_text().replace('public_url = "https://', 'public_url = "http://')
    (pair.a.path / "node.toml").write_text(text)
    with pytest.raises(ConfigFileError, match=r"public_url http://127\.0\.0\.1:\d+ must be https://"):
        load_config(pair.a.path)


def test_absolute_tls_paths_and_the_default_endpoint(pair: Pair) -> None:
    tls = pair.a.path / "tls"
    _write_toml(pair.a.path, f'cert = "{tls / "node.crt"}"\nkey = "{tls / "node.key"}"\nca = "{tls / "ca.pem"}"\n')
    cfg = load_config(pair.a.path)
    assert cfg.tls is not None and load_tls(cfg.tls, "/nonexistent").cert == tls / "node.crt"
    assert cfg.model_copy(update={"server": cfg.server.model_copy(update={"public_url": None})}).endpoint().startswith(
        "https://"
    )


# --- tripwire tls selfsign / show ------------------------------------------------------------------


def test_selfsign_writes_a_key_and_certificate_that_load_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "a"
    assert main(["init", "--home", str(home), "--lab", "a", "--endpoint", "https://node-a.example:8700"]) == 0
    # node.toml may name the files before they exist: selfsign does not need them.
    _write_toml(home, 'cert = "tls/cert.pem"\nkey = "tls/key.pem"\nca = "tls/cert.pem"\n')
    with pytest.raises(TLSConfigError, match="does not exist"):
        NodeHome.open(home)
    capsys.readouterr()
    assert main(["tls", "selfsign", "--home", str(home), "--host", "10.0.0.7", "--days", "30"]) == 0
    assert "sha256" in capsys.readouterr().out
    key = home / "tls" / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((home / "tls" / "cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"node-a.example"}
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"10.0.0.7", "127.0.0.1"}
    assert 29 <= (cert.not_valid_after_utc - NOW).days <= 30
    cfg = load_config(home)  # the key matches, the certificate is current
    assert cfg.tls is not None and load_tls(cfg.tls, home).certificate == cert
    assert main(["tls", "show", "--home", str(home), "--json"]) == 0
    assert '"node-a.example"' in capsys.readouterr().out
    before = key.read_bytes()
    assert main(["tls", "selfsign", "--home", str(home)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert key.read_bytes() == before
    assert main(["tls", "selfsign", "--home", str(home), "--days", "0", "--key", "tls/k2.pem"]) == 2
    assert not (home / "tls" / "k2.pem").exists()


def test_tls_show_without_tls_section_is_a_configuration_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--home", str(tmp_path / "a"), "--lab", "a"]) == 0
    assert main(["tls", "show", "--home", str(tmp_path / "a")]) == 2
    # The console wraps long lines at its width, and the home's path length varies.
    assert "has no tls section" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=["world", "group", "other"])
def test_tls_key_readable_by_others_is_refused(pair: Pair, mode: int) -> None:
    key = pair.a.path / "tls" / "node.key"
    os.chmod(key, mode)
    with pytest.raises(TLSConfigError, match="readable by others") as e:
        NodeHome.open(pair.a.path)
    assert "chmod 600" in e.value.message


def test_training_gate_polls_its_node_over_mutual_tls(pair: Pair) -> None:
    # The gate on a home with [tls] presents the node's certificate and trusts only [tls] ca.
    from node.pause.gate import TrainingGate

    with ThreadedNode(pair.b, sync=False):
        gate = TrainingGate(pair.b, grace_s=0, check_local=False)
        try:
            assert gate.url == pair.b_url
            decision = gate.check(1)
            assert decision.proceed and decision.source == "node", decision
        finally:
            gate.close()
        # A gate polling by URL without the network's CA cannot vouch for the node: it stops.
        by_url = TrainingGate(pair.b_url, key=pair.b.key, member="b", grace_s=0)
        try:
            refused = by_url.check(1)
            assert not refused.proceed and refused.source == "unreachable", refused
        finally:
            by_url.close()
