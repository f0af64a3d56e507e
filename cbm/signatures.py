"""Party signing keys (contract §5): Ed25519, detached ``.sig`` files.

A key file is JSON ``{"party", "private_key", "public_key"}`` (base64 raw keys), written
with mode 0600. A signature never covers bare bytes: it covers a *context* naming what is
signed and for whom, then the SHA-256 of the bytes (``signed_message``), so a signature
made for one purpose verifies for no other. The contexts (scheme ``cbm-sig/1``):

- ``submission of party P``: the ``.sig`` beside a party's submission;
- ``publisher manifest of release R``: the publisher's ``manifest.json.sig``;
- ``co-signature of release R by party P``: ``cosign/P.sig``.

Releases published before the scheme (their manifest has no ``signature_scheme``) were
signed over the bare manifest bytes and keep verifying that way (``LEGACY``); submissions
are only ever checked under the scheme. ``verify_signature`` checks one.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cbm.files import UnreadableKeyFile, key_file_fields

SCHEME = "cbm-sig/1"
LEGACY = None  # the context of a release manifest signed before SCHEME: its bare bytes


def submission_context(party: str) -> str:
    return f"submission of party {party}"


def manifest_context(release_id: str) -> str:
    return f"publisher manifest of release {release_id}"


def cosign_context(release_id: str, party: str) -> str:
    return f"co-signature of release {release_id} by party {party}"


def key_fingerprint(public_key_b64: str) -> str:
    """The SHA-256 of a public key's raw bytes, hex: what a manifest names its signer by, so a
    reader can compare the key it obtained with the one that signed."""
    return hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()


def signed_message(context: str | None, data: bytes | None, digest: str | None = None) -> bytes:
    """What is signed: the scheme, the context and the SHA-256 of ``data`` (or its hex
    ``digest``, for a file hashed as it was streamed); ``LEGACY``: ``data`` itself."""
    if context is LEGACY:
        return data
    if "\n" in context:
        raise ValueError("a signature context is one line")
    digest = digest or hashlib.sha256(data).hexdigest()
    return f"{SCHEME}\n{context}\n{digest}\n".encode()


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
        pseudonym_key = "a pseudonymisation key: that one goes to CBM_KEY_FILE"
        try:
            data = key_file_fields(
                key_file,
                "signing key file",
                "'cbm keygen'",
                ("party", "private_key"),
                other=("key_version", pseudonym_key),
            )
            self._key = Ed25519PrivateKey.from_private_bytes(
                base64.b64decode(data["private_key"], validate=True)
            )
        except UnreadableKeyFile as exc:
            raise SigningError(str(exc)) from exc
        except ValueError as exc:
            raise SigningError(
                f"{key_file}: not a signing key file (one written by 'cbm keygen'): its "
                "private_key is not an Ed25519 key in base64"
            ) from exc
        self.party = data["party"]
        self.path = Path(key_file)

    @property
    def public_key(self) -> str:
        raw = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()

    def sign(self, data: bytes, context: str) -> bytes:
        """The detached signature file's bytes over ``data`` in ``context``: base64 Ed25519
        (deterministic) and a newline."""
        return base64.b64encode(self._key.sign(signed_message(context, data))) + b"\n"


def sign_file(key_file: Path, path: Path) -> Path:
    """Write ``<path>.sig``, the key's party's submission signature; return its path."""
    key = SigningKey(key_file)
    if not path.is_file():
        raise SigningError(f"{path}: no such file")
    sig = path.with_name(path.name + ".sig")
    sig.write_bytes(key.sign(path.read_bytes(), submission_context(key.party)))
    return sig


def verify_signature(
    public_key_b64: str,
    data: bytes | None,
    sig_bytes: bytes,
    context: str | None,
    digest: str | None = None,
) -> bool:
    """Ed25519 over ``data`` (or the bytes whose SHA-256 is ``digest``) in ``context``
    (``signed_message``); the .sig holds the signature in base64 (or raw 64 bytes)."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        sig = (
            sig_bytes
            if len(sig_bytes) == 64
            else base64.b64decode(sig_bytes.strip(), validate=True)
        )
        key.verify(sig, signed_message(context, data, digest))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False
