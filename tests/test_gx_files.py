"""GX's files written whole (compat/gx.py): a write that stops half-way leaves the old
file. If a GX upgrade writes these files another way, these fail loudly."""

import great_expectations as gx
import pytest

from compat import gx as gx_files


class Killed(BaseException):
    """Stands for the process dying in the middle of a write."""


def _die_half_way(monkeypatch):
    """From now on, every write through GX's file ``open`` dies after its first half."""

    def half(self, data):
        self._buffer.write(data[: len(data) // 2])
        raise Killed

    monkeypatch.setattr(gx_files._WholeFile, "write", half, raising=False)


def test_installed_where_gx_writes_its_files():
    import checks.validation  # noqa: F401  (the validation stack installs compat/gx.py)

    assert gx_files.whole_files_installed()


def test_the_project_file_survives_a_write_that_dies(tmp_path, monkeypatch):
    """great_expectations.yml is rewritten when a datasource is added; dying then left it
    empty or cut, and no later run could load the project."""
    ctx = gx.get_context(mode="file", project_root_dir=str(tmp_path))
    project = tmp_path / "gx" / "great_expectations.yml"
    before = project.read_bytes()
    _die_half_way(monkeypatch)
    with pytest.raises(Killed):
        ctx.data_sources.add_sql(name="w", connection_string=f"duckdb:///{tmp_path / 'w.db'}")
    assert project.read_bytes() == before
    assert not list(project.parent.glob("*.tmp"))
    gx.get_context(mode="file", project_root_dir=str(tmp_path))  # loads


def test_a_stored_object_survives_a_write_that_dies(tmp_path, monkeypatch):
    ctx = gx.get_context(mode="file", project_root_dir=str(tmp_path))
    ctx.suites.add(gx.ExpectationSuite(name="s"))
    (stored,) = (tmp_path / "gx" / "expectations").glob("s.json")
    before = stored.read_bytes()

    _die_half_way(monkeypatch)
    with pytest.raises(Killed):  # adding to a stored suite saves it
        ctx.suites.get("s").add_expectation(
            gx.expectations.ExpectColumnValuesToNotBeNull(column="a")
        )
    assert stored.read_bytes() == before
    assert not list(stored.parent.glob("*.tmp"))


def test_a_new_project_is_written_whole(tmp_path, monkeypatch):
    _die_half_way(monkeypatch)
    with pytest.raises(Killed):
        gx.get_context(mode="file", project_root_dir=str(tmp_path))
    assert not (tmp_path / "gx" / "great_expectations.yml").exists()
    assert not list((tmp_path / "gx").glob("*.tmp"))


def test_reading_and_other_modes_are_pythons_own(tmp_path):
    path = tmp_path / "f.txt"
    with gx_files.whole_file_open(path, "w") as f:
        f.write("one")
    assert path.read_text() == "one"
    with gx_files.whole_file_open(path) as f:
        assert f.read() == "one"
    with gx_files.whole_file_open(path, "a") as f:  # appending is not replacing
        f.write(" two")
    assert path.read_text() == "one two"
