"""Changing the pseudonymisation key on purpose (``cbm rotate-key``; contract §5, key continuity).

A warehouse is built with one key: its pseudonyms (``P-…``) and keyed technical keys (``K-…``)
were made with it, and a run with another key stops before writing anything. Rotation is the
one way to change keys. With the old key and the new one it maps, in one transaction:

- every pseudonym of a party the warehouse knows (the codes of its landed submissions, of the
  registry it last saw and of attested parties) from the old key's to the new key's, in every
  stored table that holds one (``PSEUDONYM_COLUMNS``);
- every keyed technical key, from the raw values kept in the staged rows of the workdir
  (``staged/<submission>.parquet``, the sensitive tier beside the landing area);
- the recorded key (``pseudonym_key``), and a row in ``key_rotations`` that the next release
  names in its manifest (and that explains its changes to the release guard).

What verification derives from these tables (events, whose ids follow their origin report's
pseudonym, verdicts, disputes) is recomputed by the next run; the next release lists each
event whose id changed as ``replaced_by`` its successor. Nothing here imports Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from cbm.contract import KINDS
from cbm.protection import PseudonymKey, keyed_technical_keys
from warehouse.db import recorded_key
from warehouse.queries import query

# every stored column that holds a party pseudonym (derived tables are recomputed by the next
# run; published_event_members keeps what earlier releases published, to name successors)
PSEUDONYM_COLUMNS: dict[str, tuple[str, ...]] = {
    "landed_submissions": ("source",),
    "party_directory": ("pseudonym",),
    "version_conflicts": ("source",),
    "published_event_members": ("source",),
    **{f"anon_{k}": ("source",) for k in KINDS},
    **{f"reports_{k}": ("source",) for k in KINDS},
    **{f"superseded_{k}": ("source",) for k in KINDS},
    "anon_attestations": ("source", "subject_party"),
    "reports_attestations": ("source", "subject_party"),
}
TECHNICAL_KEY_COLUMNS = {"anon_incidents": "technical_keys", "reports_incidents": "technical_keys"}


class RotationError(ValueError):
    """Rotation cannot start; the message says why (nothing was changed)."""


@dataclass(frozen=True)
class Rotation:
    old: tuple[str, str]
    new: tuple[str, str]
    parties: int
    technical_keys: int
    rows: int


def rotate_key(
    con: duckdb.DuckDBPyConnection, old: PseudonymKey, new: PseudonymKey, staged_dir: Path
) -> Rotation:
    """Re-pseudonymise the warehouse behind ``con`` from ``old`` to ``new`` (one transaction:
    all of it or nothing). ``RotationError`` when ``old`` is not the warehouse's key, the two
    are the same key, or a staged file needed for the technical keys is missing."""
    recorded = recorded_key(con)
    if recorded is None:
        raise RotationError(
            "this warehouse has no pseudonyms yet: no rotation needed, run with the new key"
        )
    if recorded[1] != old.fingerprint:
        raise RotationError(
            f"CBM_KEY_FILE holds {old.version} ({old.fingerprint}), but this warehouse was built "
            f"with {recorded[0]} ({recorded[1]}): the old key must be the warehouse's"
        )
    if new.fingerprint == old.fingerprint:
        raise RotationError(f"--new-key is the warehouse's key already ({old.fingerprint})")
    codes = sorted(code for (code,) in con.execute(query("rotation.codes")).fetchall())
    pseudonyms = pl.DataFrame(
        {"old": [old.pseudonym(c) for c in codes], "new": [new.pseudonym(c) for c in codes]},
        schema={"old": pl.String, "new": pl.String},
    )
    tkeys = _technical_key_map(con, old, new, staged_dir)
    con.register("pseudonym_map", pseudonyms.to_arrow())
    con.register("tkey_map", tkeys.to_arrow())
    rows = 0
    con.execute("BEGIN TRANSACTION")
    try:
        for table, columns in PSEUDONYM_COLUMNS.items():
            for column in columns:
                rows += con.execute(
                    query("rotation.repseudonymise", table=table, column=column)
                ).fetchone()[0]
        for table, column in TECHNICAL_KEY_COLUMNS.items():
            rows += con.execute(
                query("rotation.rehash_technical_keys", table=table, column=column)
            ).fetchone()[0]
        con.execute(query("rotation.landed_under"), [new.version])
        con.execute(query("warehouse.forget_key"))
        con.execute(query("warehouse.record_key"), [new.version, new.fingerprint])
        con.execute(
            query("rotation.record"), [recorded[0], recorded[1], new.version, new.fingerprint]
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("pseudonym_map")
        con.unregister("tkey_map")
    return Rotation(
        (recorded[0], recorded[1]), (new.version, new.fingerprint), len(codes), tkeys.height, rows
    )


def _technical_key_map(
    con: duckdb.DuckDBPyConnection, old: PseudonymKey, new: PseudonymKey, staged_dir: Path
) -> pl.DataFrame:
    """Old keyed hash -> new keyed hash of every raw technical key in the staged incident rows
    of submissions whose rows carry technical keys."""
    shas = [sha for (sha,) in con.execute(query("rotation.with_technical_keys")).fetchall()]
    missing = [sha for sha in shas if not (staged_dir / f"{sha}.parquet").is_file()]
    if missing:
        raise RotationError(
            f"{len(missing)} submission(s) with technical keys have no staged rows in "
            f"{staged_dir} (first: {missing[0]}.parquet): the raw keys are needed to hash them anew"
        )
    raw = pl.concat(
        [pl.read_parquet(staged_dir / f"{sha}.parquet", columns=["technical_keys"]) for sha in shas]
        or [pl.DataFrame({"technical_keys": []}, schema={"technical_keys": pl.String})]
    )
    values = (
        raw.select(pl.col("technical_keys").str.split(";"))
        .explode("technical_keys")
        .select(pl.col("technical_keys").str.strip_chars().str.to_lowercase())
        .filter(pl.col("technical_keys").is_not_null() & (pl.col("technical_keys") != ""))
        .unique()
        .sort("technical_keys")
    )
    return pl.DataFrame(
        {
            "old": keyed_technical_keys(values, "technical_keys", old),
            "new": keyed_technical_keys(values, "technical_keys", new),
        }
    )
