"""Party signing keys (contract §5): Ed25519, detached ``.sig`` files.

A key file is JSON ``{"party", "private_key", "public_key"}`` (base64 raw keys), written
with mode 0600. The ``.sig`` beside a submission holds the base64 signature of its bytes.
``verify_signature`` checks one.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningError(RuntimeError):
    """The key file or the file to sign is unusable."""


def new_party_key(party: str, out: Path) -> str:
    """Write a new key file for ``party``; return the base64 public key for parties.yaml."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "party": party,
                "private_key": base64.b64encode(private).decode(),
                "public_key": base64.b64encode(public).decode(),
            }
        )
        + "\n"
    )
    out.chmod(0o600)
    return base64.b64encode(public).decode()


class SigningKey:
    """A party's private key, read from the key file ``cbm keygen`` wrote."""

    def __init__(self, key_file: Path):
        try:
            data = json.loads(Path(key_file).read_text())
            self.party = str(data["party"])
            self._key = Ed25519PrivateKey.from_private_bytes(
                base64.b64decode(data["private_key"], validate=True)
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SigningError(
                f"{key_file}: not a signing key file (one written by 'cbm keygen'): "
                f"{exc.__class__.__name__}"
            ) from exc
        self.path = Path(key_file)

    @property
    def public_key(self) -> str:
        raw = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()

    def sign(self, data: bytes) -> bytes:
        """The detached signature file's bytes: base64 Ed25519 (deterministic) and a newline."""
        return base64.b64encode(self._key.sign(data)) + b"\n"


def sign_file(key_file: Path, path: Path) -> Path:
    """Write ``<path>.sig``; return its path."""
    key = SigningKey(key_file)
    if not path.is_file():
        raise SigningError(f"{path}: no such file")
    sig = path.with_name(path.name + ".sig")
    sig.write_bytes(key.sign(path.read_bytes()))
    return sig


def verify_signature(public_key_b64: str, data: bytes, sig_bytes: bytes) -> bool:
    """Ed25519 over the file bytes; the .sig holds the signature in base64 (or raw 64 bytes)."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        sig = (
            sig_bytes
            if len(sig_bytes) == 64
            else base64.b64decode(sig_bytes.strip(), validate=True)
        )
        key.verify(sig, data)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False
