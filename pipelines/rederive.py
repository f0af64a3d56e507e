"""``cbm rederive BUNDLE --release PATH``: recompute a release from its member bundle alone
(no raw inputs, no pseudonymisation key) in a fresh directory, with the same Dagster assets
as ``cbm run``, and compare every file byte for byte (contract §4, "Re-derivation").

The publisher's signature and the co-signatures are not re-derived (they are what a party
adds once the bytes match); every other file of the release is, ``manifest.json`` included.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from cbm import release as rel

NOT_DERIVED = (rel.SIGNATURE, rel.COSIGN_DIR + "/")


class RederiveError(ValueError):
    """The bundle and the release cannot be compared (one line: what and where)."""


def release_files(root: Path) -> dict[str, Path]:
    """Every file of a release folder a re-derivation must reproduce."""
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).as_posix().startswith(NOT_DERIVED)
    }


def compare(expected: Path, derived: Path) -> list[str]:
    """The differences between two release folders, one line each (empty: identical)."""
    want, got = release_files(expected), release_files(derived)
    problems = [f"only in the release: {p}" for p in sorted(want.keys() - got.keys())]
    problems += [f"not in the release: {p}" for p in sorted(got.keys() - want.keys())]
    problems += [
        f"differs: {p}"
        for p in sorted(want.keys() & got.keys())
        if want[p].read_bytes() != got[p].read_bytes()
    ]
    return problems


@contextmanager
def _without(variable: str):
    """Run without an environment variable (the publisher's key is never used here)."""
    saved = os.environ.pop(variable, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[variable] = saved


def rederive(bundle: Path, release: Path, workdir: Path | None = None, say=print) -> list[str]:
    """Recompute the release of ``bundle`` and compare it with ``release`` (a release folder,
    or a publish folder whose LATEST is taken). Returns the differences (empty: identical).
    ``workdir``: where to work (kept); default a temporary folder, removed afterwards."""
    from warehouse.bundle import BundleError, read_bundle

    release = rel.release_folder(release)
    if not (release / rel.MANIFEST).is_file():
        raise RederiveError(f"--release {release}: not a release folder (no {rel.MANIFEST})")
    try:
        description = read_bundle(Path(bundle))
    except BundleError as exc:
        raise RederiveError(str(exc)) from None
    if description["release_id"] != release.name:
        raise RederiveError(
            f"{bundle} is the bundle of {description['release_id']}, not of {release.name}"
        )
    previous = description.get("previous_release_id")
    if previous and not (release.parent / previous / rel.MANIFEST).is_file():
        raise RederiveError(
            f"the previous release {previous} is needed beside {release} (changes/ are "
            "computed against it)"
        )
    if workdir is not None:
        return _rederive_in(Path(bundle), release, previous, Path(workdir), say, description)
    with tempfile.TemporaryDirectory(prefix="cbm-rederive-") as tmp:
        return _rederive_in(Path(bundle), release, previous, Path(tmp), say, description)


def _rederive_in(
    bundle: Path, release: Path, previous: str | None, base: Path, say, description: dict
) -> list[str]:
    import dagster as dg

    from assets.resources import CbmSettings, RegistryResource, SigningKeyResource
    from pipelines.definitions import build_definitions
    from pipelines.runs import REDERIVE_VERIFY, InProcess
    from warehouse.bundle import load_bundle
    from warehouse.db import Warehouse

    started = time.monotonic()
    declarations = description.get("manifest_declarations", {})
    workdir, publish = base / "work", base / "publish"
    for folder in (base / "inbox", workdir, publish / "releases"):
        folder.mkdir(parents=True, exist_ok=True)
    if previous:  # the public previous release: what changes/ are computed against
        shutil.copytree(release.parent / previous, publish / "releases" / previous)
        rel.set_latest(publish, previous)
    settings = CbmSettings(
        inbox=str(base / "inbox"),
        workdir=str(workdir),
        publish=str(publish),
        rederiving=json.dumps(declarations, sort_keys=True),
    )
    with Warehouse(str(settings.warehouse_path)).connect() as con:
        load_bundle(con, bundle, description)
    say(f"re-deriving {release.name} from {bundle} in {base}")
    defs = build_definitions(
        settings,
        RegistryResource(directory=str((bundle / "registry").resolve())),
        SigningKeyResource(key_file=None),
    )
    with _without("CBM_SIGNING_KEY_FILE"), dg.DagsterInstance.ephemeral() as instance:
        runs = InProcess(defs, instance, show=False)
        runs.verify(REDERIVE_VERIFY)
        runs.publish(settings)
    derived = publish / "releases" / release.name
    if not derived.is_dir():
        made = rel.latest(publish)
        return [f"the bundle derives {made}, not {release.name}"]
    problems = compare(release, derived)
    say(
        f"compared {len(release_files(release))} files in {time.monotonic() - started:.1f}s"
        + ("" if problems else ": all identical")
    )
    return problems
