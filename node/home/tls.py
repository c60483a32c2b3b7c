"""The home's ``[tls]`` files: checked once when the home is opened, described, and written.

The files are checked with ``cryptography`` when a home is opened (:meth:`NodeHome.open
<node.home.NodeHome.open>` keeps the result as ``home.tls``), so that a node refuses to start
with a clear message (missing or unreadable file, not PEM, key not matching the certificate,
certificate expired or not yet valid) instead of failing at the first handshake. Reading
``node.toml`` itself touches no certificate. How the transport uses the files (the server's
options, the clients' context) is :mod:`node.net.tls`; see docs/adr/0006-mutual-tls.md.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.errors import TLSConfigError

if TYPE_CHECKING:
    from node.home.config import TLSConfig

log = logging.getLogger(__name__)

#: Where ``tripwire tls selfsign`` writes, relative to the home.
SELFSIGNED_CERT = "tls/cert.pem"
SELFSIGNED_KEY = "tls/key.pem"


def resolve(home: str | os.PathLike[str], path: str) -> Path:
    """``path`` made absolute against the home directory (as the signing key's path)."""
    p = Path(path)
    return p if p.is_absolute() else Path(home) / p


def _read(path: Path, setting: str) -> bytes:
    if not path.exists():
        raise TLSConfigError(f"tls.{setting}: {path} does not exist")
    try:
        return path.read_bytes()
    except OSError as e:
        raise TLSConfigError(f"tls.{setting}: cannot read {path}: {e.strerror or e}") from e


def _certificates(path: Path, setting: str) -> list[x509.Certificate]:
    data = _read(path, setting)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise TLSConfigError(f"tls.{setting}: {path} holds no PEM certificate ({e})") from e
    return certs


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def describe(cert: x509.Certificate) -> str:
    """Subject and serial: enough for an operator to find the certificate meant."""
    return f"{cert.subject.rfc4514_string() or '(empty subject)'} (serial {cert.serial_number:x})"


def host_names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses the certificate is valid for (its SANs)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class TLSFiles:
    """The ``[tls]`` files of a home, checked: only :func:`load_tls` makes one."""

    cert: Path
    """PEM chain of this node: its certificate first, then any intermediates."""
    key: Path
    """PEM private key of the certificate (unencrypted; protected by file mode)."""
    ca: Path
    """PEM bundle of the CAs (or pinned peer certificates) trusted for peers."""
    require_client_cert: bool
    """The server refuses TLS clients without a certificate from ``ca``."""
    certificate: x509.Certificate
    """This node's certificate (the chain's first)."""
    trusted: tuple[x509.Certificate, ...]
    """The certificates in ``ca``."""


def load_tls(cfg: TLSConfig, home: str | os.PathLike[str], *, now: datetime | None = None) -> TLSFiles:
    """Check the ``[tls]`` files of ``home``; raise :class:`TLSConfigError` naming the problem."""
    now = now or datetime.now(UTC)
    cert_path, key_path, ca_path = resolve(home, cfg.cert), resolve(home, cfg.key), resolve(home, cfg.ca)
    chain = _certificates(cert_path, "cert")
    leaf = chain[0]
    if leaf.not_valid_after_utc <= now:
        raise TLSConfigError(
            f"tls.cert: {cert_path} ({describe(leaf)}) expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
            "issue a new certificate (see the operator guide, TLS)"
        )
    if leaf.not_valid_before_utc > now:
        raise TLSConfigError(
            f"tls.cert: {cert_path} ({describe(leaf)}) is not valid before "
            f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check this machine's clock)"
        )
    key_data = _read(key_path, "key")
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError as e:
        raise TLSConfigError(
            f"tls.key: {key_path} is encrypted; the TLS key must be unencrypted PEM, readable only by the "
            "service user (chmod 600)"
        ) from e
    except (ValueError, UnsupportedAlgorithm) as e:
        raise TLSConfigError(f"tls.key: {key_path} is not a PEM private key ({e})") from e
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise TLSConfigError(f"tls.key: {key_path} does not match the certificate {cert_path} ({describe(leaf)})")
    mode = stat.S_IMODE(key_path.stat().st_mode)
    if mode & 0o077:
        # Like the signing key: a private key others can read is refused, never just warned
        # about (an impersonated node would be trusted by every peer that pins it).
        raise TLSConfigError(
            f"tls.key: {key_path} is readable by others (mode {mode:o}); run: chmod 600 {key_path} "
            "(and replace the certificate if others may have read the key)"
        )
    trusted = _certificates(ca_path, "ca")
    current = [c for c in trusted if c.not_valid_before_utc <= now < c.not_valid_after_utc]
    if not current:
        raise TLSConfigError(f"tls.ca: every certificate in {ca_path} has expired or is not yet valid")
    for c in trusted:
        if c not in current:
            log.warning("tls.ca: %s in %s is outside its validity period and trusts nothing", describe(c), ca_path)
    return TLSFiles(cert_path, key_path, ca_path, cfg.require_client_cert, leaf, tuple(trusted))


# --- self-signed certificates (`tripwire tls selfsign`) ------------------------------------------


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(n.strip().lower() for n in names if n.strip()):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def selfsigned(
    common_name: str, hosts: Sequence[str], *, days: int = 365, now: datetime | None = None
) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key and a self-signed certificate for ``hosts``; (key PEM, cert PEM).

    The certificate serves as this node's server and client certificate, and is what the
    other labs put in their ``ca`` bundle to pin it (so it is its own trust anchor).
    """
    if not hosts:
        raise TLSConfigError("a certificate needs at least one host name or IP address")
    if days < 1:
        raise TLSConfigError("a certificate must be valid for at least one day")
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A little back-dating tolerates peers whose clocks run slightly behind.
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def write_selfsigned(
    home: str | os.PathLike[str], common_name: str, hosts: Sequence[str], *, days: int = 365,
    cert: str = SELFSIGNED_CERT, key: str = SELFSIGNED_KEY,
) -> tuple[Path, Path]:
    """Write a new key (mode 0600, never over an existing file) and its self-signed
    certificate under ``home``; return (cert path, key path)."""
    cert_path, key_path = resolve(home, cert), resolve(home, key)
    for p in (cert_path, key_path):
        if p.exists():
            raise TLSConfigError(f"{p} already exists; refusing to overwrite it (choose other file names to rotate)")
    key_pem, cert_pem = selfsigned(common_name, hosts, days=days)
    for p in (cert_path, key_path):
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        # O_EXCL and the mode at creation: never over a file, never world-readable.
        for path, data, mode in ((key_path, key_pem, 0o600), (cert_path, cert_pem, 0o644)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            written.append(path)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except OSError as e:
        for path in written:
            path.unlink(missing_ok=True)
        raise TLSConfigError(f"cannot write the TLS key or certificate: {e.strerror or e}") from e
    return cert_path, key_path


__all__ = [
    "SELFSIGNED_CERT",
    "SELFSIGNED_KEY",
    "TLSFiles",
    "describe",
    "fingerprint",
    "host_names",
    "load_tls",
    "resolve",
    "selfsigned",
    "write_selfsigned",
]
