"""Key material for a TLS + SuperNode-authenticated Flower deployment.

:func:`generate_deployment_keys` writes into one directory::

    ca.crt / ca.key              a self-signed CA (EC P-384)
    server.crt / server.key      the SuperLink certificate, signed by the CA, with SANs
                                 for every host given (default ``localhost`` and ``127.0.0.1``)
    supernode-N / supernode-N.pub
                                 SuperNode key pairs, EC P-384 in OpenSSH format: the
                                 private key for ``flower-supernode --auth-supernode-private-key``,
                                 the public key for ``flwr supernode register``

Private keys are written with mode 0600. Time and key generation are
injectable so tests can make fixed material.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from vane.shared.errors import ConfigError


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class DeploymentKeys:
    """Paths of the generated files."""

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    supernode_keys: list[Path] = field(default_factory=list)

    @property
    def supernode_public_keys(self) -> list[Path]:
        return [p.with_name(p.name + ".pub") for p in self.supernode_keys]


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def generate_deployment_keys(
    directory: str | Path,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    num_supernodes: int = 2,
    days: int = 365,
    new_key: Callable[[], ec.EllipticCurvePrivateKey] = lambda: ec.generate_private_key(ec.SECP384R1()),
    now: Callable[[], dt.datetime] = _now,
) -> DeploymentKeys:
    """Write a CA, a SuperLink certificate for ``hosts`` and ``num_supernodes`` SuperNode key pairs.

    Parameters
    ----------
    directory : path
        Created if missing; existing files of the same names are overwritten.
    hosts : sequence of str, default ("localhost", "127.0.0.1")
        DNS names and IP addresses the SuperLink is reached at (certificate SANs).
    num_supernodes : int, default 2
    days : int, default 365
        Validity of the certificates.
    """
    if not hosts:
        raise ConfigError("hosts is empty; expected at least one DNS name or IP address for the SuperLink")
    if num_supernodes < 0:
        raise ConfigError(f"num_supernodes is {num_supernodes}; expected >= 0")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    start = now() - dt.timedelta(minutes=5)
    end = start + dt.timedelta(days=days)

    ca_key = new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Vane federation CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )

    server_key = new_key()
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )

    keys = DeploymentKeys(out, out / "ca.crt", out / "server.crt", out / "server.key")
    _write_private(out / "ca.key", _pem_key(ca_key))
    keys.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(keys.server_key, _pem_key(server_key))
    keys.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    for i in range(1, num_supernodes + 1):
        keys.supernode_keys.append(write_supernode_key(out / f"supernode-{i}", new_key()))
    return keys


def write_supernode_key(path: str | Path, key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    """Write an EC key pair in OpenSSH format: ``path`` (0600) and ``path.pub``."""
    path = Path(path)
    key = key or ec.generate_private_key(ec.SECP384R1())
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ),
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    path.with_name(path.name + ".pub").write_bytes(public + b" vane-supernode\n")
    return path
