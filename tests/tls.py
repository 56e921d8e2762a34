"""Throwaway TLS material for tests, made with the openssl CLI: a CA, a server certificate it signed for
localhost/127.0.0.1, a client certificate with an encrypted key, and an unrelated CA."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
CLIENT_KEY_PASSWORD = "client-key-pw"


@dataclass(frozen=True)
class PKI:
    """Paths of the files `make_test_pki` wrote."""

    ca: Path  # the CA that signed the server and client certificates
    other_ca: Path  # a CA that signed neither
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with CLIENT_KEY_PASSWORD


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    _openssl(directory, "req", "-x509", *EC, "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return directory / f"{name}.pem", directory / f"{name}.key"


def _signed(directory: Path, name: str, ca: tuple[Path, Path], usage: str, key_args: tuple[str, ...]) -> None:
    _openssl(directory, "req", *EC, *key_args, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}")
    (directory / f"{name}.ext").write_text(f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                           f"extendedKeyUsage={usage}\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")


def make_test_pki(directory: Path) -> PKI:
    """Write the CA, server and client material into `directory`."""
    ca = _ca(directory, "driftline-test-ca")
    other_ca, _ = _ca(directory, "unrelated-ca")
    _signed(directory, "server", ca, "serverAuth", ("-nodes",))
    _signed(directory, "client", ca, "clientAuth", ("-passout", f"pass:{CLIENT_KEY_PASSWORD}"))
    return PKI(ca=ca[0], other_ca=other_ca, server_cert=directory / "server.pem",
                   server_key=directory / "server.key", client_cert=directory / "client.pem",
                   client_key=directory / "client.key")
