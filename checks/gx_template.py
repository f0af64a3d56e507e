"""A GX project not built again: a new one written from the last one this process set up,
and a copied one that names its own warehouse.

Setting a GX project up (the context's files, the datasource on the warehouse, a table asset
per table, every suite, validation definition and checkpoint) costs more than validating a
small batch (benchmarks/README.md, M21). A process that validates many new workdirs (a test
run, a script that re-derives several bundles) pays it once: after ``run_suites`` stores a
new checkpoint, the project's stored configuration (everything but ``uncommitted/``) is kept
in memory, and the next workdir without a project gets those files, its own warehouse named
in the project file. What it then validates, and how, is what a project built step by
step would do: suites, definitions and checkpoints are still checked against the suites'
JSON and the warehouse file on every use (``checks.validation._validation_definition``), and
anything that does not match is built again.

Nothing is written outside the workdir and nothing outlives the process: a ``cbm run`` sets
up its project as before. A warm process (``pipelines.warm_server``) sets one up as it starts,
in a temporary folder, and keeps it for the runs it forks (``prepare_gx_project``).

A workdir copied or moved with its project (``follow``) gets its own warehouse named in the
project file before GX reads it: GX would replace the datasource and drop every table asset,
and every suite, definition and checkpoint would be built again (M24).
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from cbm.files import write_atomic

CONFIG = "great_expectations.yml"

_kept: tuple[dict, dict[str, bytes]] | None = None  # (the project file, read; the other files)


def warehouse_url(warehouse_path: Path) -> str:
    """The connection string a project's ``warehouse`` datasource names the warehouse by."""
    return f"duckdb:///{warehouse_path}"


def _named(config) -> str | None:
    """The warehouse a read project file names, if it has the datasource."""
    try:
        return config["fluent_datasources"]["warehouse"]["connection_string"]
    except (KeyError, TypeError):
        return None


def seed(gx_dir: Path, warehouse_path: Path) -> bool:
    """Write the kept project into ``gx_dir``, naming ``warehouse_path``, when ``gx_dir``
    has no project yet and one is kept; whether it did."""
    root = gx_dir / "gx"
    if _kept is None or (root / CONFIG).exists():
        return False
    config, files = _kept
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "uncommitted").mkdir(exist_ok=True)
    config = copy.deepcopy(config)
    config["fluent_datasources"]["warehouse"]["connection_string"] = warehouse_url(warehouse_path)
    # the project file last and whole: a project that has it has all of its files (a seed
    # that stops half-way is written again by the next one)
    write_atomic(root / CONFIG, yaml.safe_dump(config, sort_keys=False))
    return True


def follow(gx_dir: Path, warehouse_path: Path) -> bool:
    """Name ``warehouse_path`` in ``gx_dir``'s project when it names another warehouse (a
    workdir copied or moved, with its project); whether it did. GX itself would replace the
    datasource, and with it every table asset, so every suite, definition and checkpoint would
    be built again; only the connection string is another."""
    config_path = gx_dir / "gx" / CONFIG
    url = warehouse_url(warehouse_path)
    try:
        text = config_path.read_text()
    except OSError:
        return False
    if f" {url}\n" in text:  # the usual case, read without parsing
        return False
    config = yaml.safe_load(text)
    if _named(config) in (None, url):
        return False
    config["fluent_datasources"]["warehouse"]["connection_string"] = url
    write_atomic(config_path, yaml.safe_dump(config, sort_keys=False))
    return True


def keep(gx_dir: Path, warehouse_path: Path) -> None:
    """Keep ``gx_dir``'s stored configuration as the next new project's."""
    global _kept
    root = gx_dir / "gx"
    config = yaml.safe_load((root / CONFIG).read_text())
    if _named(config) != warehouse_url(warehouse_path):
        return
    files = {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and path.name != CONFIG
        and path.relative_to(root).parts[0] != "uncommitted"
    }
    _kept = (config, files)


def kept_files() -> list[str]:
    """The files of the kept project, by their path in it (none kept: none)."""
    return [] if _kept is None else [CONFIG, *_kept[1]]


def forget() -> None:
    """Keep nothing: the next new project is built step by step."""
    global _kept
    _kept = None
