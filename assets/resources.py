"""Dagster resources: the deployment's folders, its registry and the pseudonymisation key.

Each reaches the assets as a resource and is read once per run (``setup_for_execution``):
no asset reads the environment or a registry file itself. ``pipelines/definitions.py``
wires them (from ``CBM_*`` variables for ``dagster dev``, from flags for ``cbm run``).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from cbm.intake import Landing, landing_where, worker_count
from cbm.protection import PseudonymKey, load_key
from cbm.registry import Registry, load_registry
from cbm.signatures import SigningKey
from cbm.storage import is_remote
from checks.offline_docs import gx_dir_of
from warehouse.db import KeyMismatch, claim_key

DEFAULT_GX_KEEP_RESULTS = 30
DEFAULT_DOCS_URL = "http://127.0.0.1:8765"


class CbmSettings(dg.ConfigurableResource):
    """Inbox, workdir and publish folders, and the release's optional as-of time. The inbox,
    the publish folder and the landing area may be ``s3://bucket/prefix`` locations
    (docs/deployment.md); the workdir (warehouse, staged rows, caches) is always local."""

    inbox: str
    workdir: str
    publish: str
    # where landed submissions are kept: this, else CBM_LANDING, else <workdir>/landing
    landing: str | None = None
    # how many submissions are parsed and anonymised side by side (child processes): this,
    # else CBM_WORKERS, else 1
    workers: int | None = None
    as_of: str | None = None
    # stored GX validation results kept per suite and table (older ones and their Data Docs
    # pages are removed: the Data Docs index slows down with every one it lists)
    gx_keep_results: int = DEFAULT_GX_KEEP_RESULTS
    # where `cbm docs` serves the Data Docs: the address the UI's data_docs links open; this,
    # else CBM_DOCS_URL when a run starts (cbm run and the code location alike), else 8765
    docs_url: str | None = None
    # set by `cbm run`: the command builds the Data Docs once, after its last run, for every
    # validation it ran; its runs' results only point to them (benchmarks/README.md, M19)
    docs_after_run: bool = False
    # the release guard (cbm.guard): why a release that changes more than the policy allows
    # is published all the same (recorded in its manifest); for this run only
    accept_change: str | None = None
    # publish unsigned on purpose although the registry names the publisher's key (the
    # manifest says so); without it such a release is refused
    unsigned: bool = False
    # set by `cbm rederive` only: the manifest declarations of the release being re-derived
    # (JSON, from its bundle). Nothing is signed or refused for want of a key, the release
    # guard is not applied (it was, or was accepted, when the release was made), and the
    # manifest declares what the bundle says
    rederiving: str | None = None
    _landing: Landing | None = PrivateAttr(default=None)

    @property
    def docs_base(self) -> str:
        """The address ``cbm docs`` serves the Data Docs and releases at (no trailing /)."""
        return (self.docs_url or os.environ.get("CBM_DOCS_URL") or DEFAULT_DOCS_URL).rstrip("/")

    @property
    def landing_area(self) -> Landing:
        """The landing area (``cbm.intake.Landing``), local or on object storage."""
        if self._landing is None:
            self._landing = Landing(
                landing_where(self.workdir, self.landing),
                cache=Path(self.workdir) / "cache" / "landing",
            )
        return self._landing

    @property
    def worker_count(self) -> int:
        return worker_count(self.workers or os.environ.get("CBM_WORKERS"))

    @property
    def publish_dir(self) -> Path:
        """The local publish folder: ``publish`` itself, or the local mirror of a publish
        location on object storage (``<workdir>/cache/publish``)."""
        if is_remote(self.publish):
            return Path(self.workdir) / "cache" / "publish"
        return Path(self.publish)

    @property
    def staged_dir(self) -> Path:
        return Path(self.workdir) / "staged"

    @property
    def warehouse_path(self) -> Path:
        return Path(self.workdir) / "warehouse.duckdb"

    @property
    def held_dir(self) -> Path:
        """Where a release the release guard held is built (``held/releases/ID``): never the
        publish folder, so no reader takes it for a release."""
        return Path(self.workdir) / "held"

    @property
    def bundles_dir(self) -> Path:
        return Path(self.workdir) / "bundles"

    @property
    def gx_dir(self) -> Path:
        return gx_dir_of(self.workdir)

    def data_docs_link(self, page: str | None) -> str | None:
        """The http address of a rendered Data Docs page (``file://`` URI), as ``cbm docs``
        serves it: a browser refuses to open a ``file://`` link from the Dagster UI."""
        if not page:
            return None
        return f"{self.docs_base}/{page.rpartition('/local_site/')[2]}"


class RegistryResource(dg.ConfigurableResource):
    """parties.yaml, commitments.yaml and policy.yaml of one deployment, loaded and checked
    once per run."""

    directory: str
    _registry: Registry | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._registry = load_registry(self.directory)

    @property
    def registry(self) -> Registry:
        if self._registry is None:  # used outside a run (a test calling an asset directly)
            self._registry = load_registry(self.directory)
        return self._registry


class PseudonymKeyResource(dg.ConfigurableResource):
    """The pseudonymisation key, read once per run from ``CBM_KEY_FILE`` (a key file kept
    outside the repository) or ``CBM_PSEUDONYM_KEY``. The key itself is never part of the
    resource's configuration, so the Dagster UI never shows it."""

    _key: PseudonymKey | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._key = load_key()

    @property
    def key(self) -> PseudonymKey:
        if self._key is None:
            self._key = load_key()
        return self._key

    def claimed(self, con) -> PseudonymKey:
        """The key, once the warehouse behind ``con`` is known to be built with it (recorded
        there when it has none yet); ``dg.Failure`` naming both keys, before anything is
        written, when it was built with another (key continuity, contract §5)."""
        try:
            claim_key(con, self.key.version, self.key.fingerprint)
        except KeyMismatch as exc:
            raise dg.Failure(str(exc)) from None
        return self.key


class SigningKeyResource(dg.ConfigurableResource):
    """The publisher's Ed25519 key (``cbm keygen --party <secretariat code>``), kept outside the
    repository: ``key_file``, or ``CBM_SIGNING_KEY_FILE`` read once per run. Without one, a
    release is published unsigned (and says so)."""

    key_file: str | None = None
    _key: SigningKey | None = PrivateAttr(default=None)
    _loaded: bool = PrivateAttr(default=False)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._load()

    def _load(self) -> None:
        path = self.key_file or os.environ.get("CBM_SIGNING_KEY_FILE")
        self._key = SigningKey(Path(path)) if path else None
        self._loaded = True

    @property
    def key(self) -> SigningKey | None:
        if not self._loaded:
            self._load()
        return self._key
