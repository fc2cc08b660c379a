"""A self-signed certificate for a loopback address (openssl, as the DKIM keys are made)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(folder: Path, address: str = "127.0.0.1") -> tuple[Path, Path]:
    """(certificate, private key) in `folder`, PEM, valid for IP `address` for a day; the
    certificate is its own CA (a client trusts it with cafile=certificate)."""
    cert, key = folder / "ami-cert.pem", folder / "ami-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={address}", "-addext", f"subjectAltName=IP:{address}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key
