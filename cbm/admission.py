"""Whether a landed file is admitted at all, from its sidecar and the registry: the
file-level rules (``file_level_rejection``), checked before a file is parsed. A pure function
of the sidecar, the registry and the signature beside the landed bytes."""

from __future__ import annotations

from pathlib import Path

from cbm.contract import format_of, kind_of
from cbm.files import sha256_file
from cbm.intake import SIGNATURE_MAX_BYTES, Landing, as_landing
from cbm.registry import Registry
from cbm.signatures import submission_context, verify_signature


def file_level_rejection(
    meta: dict, registry: Registry, landing: Landing | Path
) -> tuple[str, str] | None:
    """(rule, reason) when a submission must be rejected whole, else None."""
    party, name = meta["party_dir"], meta["file_name"]
    where = f"{party}/{name}"
    if meta.get("symlink"):
        return (
            "not_a_regular_file",
            f"{where}: is a symbolic link or special file; only regular files are accepted",
        )
    if over := meta.get("over_limit"):
        return (
            "over_limit",
            f"{where}: {over['bytes']:,} bytes, over the limit of {over['max_bytes']:,} (policy.yaml "
            "limits.max_decoded_bytes); not read or copied",
        )
    if meta.get("name_not_utf8"):
        return (
            "file_name_not_utf8",
            f"{where}: the path is not UTF-8 (its other bytes shown as \\xNN); name the "
            "folder and the file in UTF-8 and hand the file in again",
        )
    if not party:
        return (
            "outside_party_directory",
            f"{name}: lies in the inbox root; submissions go in <inbox>/<party_code>/",
        )
    if party not in registry.parties:
        return (
            "unregistered_party",
            f"{where}: party code '{party}' is not registered in parties.yaml",
        )
    if name.endswith(".sig"):
        return (
            "orphan_signature",
            f"{where}: a .sig without its file ({name.removesuffix('.sig')} is not in the "
            "inbox): a signature is handed in beside the file it signs, and a data file is "
            "named .csv, .jsonl, .parquet or .stix.json",
        )
    if kind_of(Path(name).name) is None:
        return "unknown_kind", (
            f"{where}: file name must start with incidents_, compliance_ or attestations_"
        )
    if format_of(name) is None:
        return "unknown_format", f"{where}: extension must be .csv, .jsonl or .parquet"
    if meta["size_bytes"] == 0:
        return "empty_file", f"{where}: file is empty"
    public_key = registry.parties[party].public_key
    if public_key:
        landing = as_landing(landing)
        sig = landing.signature(meta["sha256"])
        if sig is None:
            return (
                "signature_missing",
                f"{where}: party {party} signs its submissions; no {name}.sig",
            )
        if not sig or len(sig) > SIGNATURE_MAX_BYTES:
            return (
                "signature_invalid",
                f"{where}: {name}.sig is empty or over {SIGNATURE_MAX_BYTES:,} bytes: not an "
                "Ed25519 signature",
            )
        digest = sha256_file(landing.local(meta["sha256"]))  # streamed, never held whole
        if not verify_signature(public_key, None, sig, submission_context(party), digest=digest):
            return (
                "signature_invalid",
                f"{where}: {name}.sig does not verify with {party}'s key as {party}'s submission "
                "signature (made by 'cbm sign', scheme cbm-sig/1)",
            )
    return None
