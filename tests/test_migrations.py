"""Schema versions: numbered SQL migrations, each applied once and recorded (#37)."""

import duckdb
import pytest

import warehouse.db as db
import warehouse.migrations as migrations
from warehouse.db import Warehouse


@pytest.fixture(autouse=True)
def fresh_process():
    db._SCHEMA_DONE.clear()  # as a new process would: the schema is checked on first connect
    yield
    db._SCHEMA_DONE.clear()


def recorded(path) -> list[tuple[int, bool]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT version, ran FROM schema_migrations ORDER BY 1").fetchall()


def test_a_new_warehouse_records_every_migration_without_running_it(tmp_path):
    path = tmp_path / "w.duckdb"
    with Warehouse(str(path)).connect() as con:
        assert migrations.schema_version(con) == migrations.migrations()[-1][0]
    assert recorded(path) == [(n, False) for n, _, _ in migrations.migrations()]


def test_a_warehouse_from_before_a_migration_gets_it_once(tmp_path):
    path = tmp_path / "w.duckdb"
    with Warehouse(str(path)).connect() as con:
        con.execute("ALTER TABLE anon_incidents DROP COLUMN row_origin")  # as it was made then
        con.execute("DELETE FROM schema_migrations WHERE version = 1")
    db._SCHEMA_DONE.clear()
    with Warehouse(str(path)).connect() as con:
        columns = {
            c
            for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = 'anon_incidents'"
            ).fetchall()
        }
    assert "row_origin" in columns
    assert (1, True) in recorded(path)
    db._SCHEMA_DONE.clear()
    with Warehouse(str(path)).connect():  # recorded: not run again
        pass
    assert recorded(path).count((1, True)) == 1


def test_a_pending_migration_runs_in_number_order_and_a_misnamed_one_is_refused(
    tmp_path, monkeypatch
):
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in migrations.MIGRATIONS.glob("*.sql"):
        (folder / path.name).write_text(path.read_text())
    path = tmp_path / "w.duckdb"
    monkeypatch.setattr(migrations, "MIGRATIONS", folder)
    with Warehouse(str(path)).connect():
        pass
    (folder / "9998_note_column.sql").write_text(
        "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS note VARCHAR;"
    )
    (folder / "9999_fill_note.sql").write_text("UPDATE alerts SET note = 'x' WHERE note IS NULL;")
    db._SCHEMA_DONE.clear()
    with Warehouse(str(path)).connect() as con:
        assert migrations.schema_version(con) == 9999
        assert (
            con.execute(
                "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'alerts' AND column_name = 'note'"
            ).fetchone()[0]
            == 1
        )
    assert recorded(path)[-2:] == [(9998, True), (9999, True)]
    (folder / "10_bad name.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="NNNN_what_it_does.sql"):
        migrations.migrations()


def test_a_warehouse_at_this_codes_schema_is_not_given_its_ddl_again(tmp_path, monkeypatch):
    path = tmp_path / "w.duckdb"
    with Warehouse(str(path)).connect():
        pass
    with duckdb.connect(str(path)) as con:  # a view the DDL would make again, taken away
        con.execute("DROP VIEW quarantine")
        stored = con.execute("SELECT fingerprint FROM schema_state").fetchall()
    assert stored == [(db.schema_fingerprint(),)]
    views = "SELECT count(*) FROM duckdb_views() WHERE view_name = 'quarantine'"
    db._SCHEMA_DONE.clear()  # a new process, the same code: the DDL is skipped
    with Warehouse(str(path)).connect() as con:
        assert con.execute(views).fetchone()[0] == 0
    # another schema (a new release of cbm-verify or of DuckDB): the DDL runs, once
    monkeypatch.setattr(db, "schema_fingerprint", lambda: "another schema")
    db._SCHEMA_DONE.clear()
    with Warehouse(str(path)).connect() as con:
        assert con.execute(views).fetchone()[0] == 1
        assert con.execute("SELECT fingerprint FROM schema_state").fetchall() == [
            ("another schema",)
        ]
