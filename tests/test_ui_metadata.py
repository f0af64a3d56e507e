"""What the Dagster UI shows, at the cheap level: readable partition keys, month partitions
only ever added, a meaning for every column, and Data Docs pointed at local copies."""

import socket
import struct
import subprocess
import sys
import time
import urllib.request

import dagster as dg
import duckdb
import pytest

from assets.metadata import _declared_schemas, table_schema
from assets.partitions import (
    monthly_partitions,
    months_between,
    register_months,
)
from cbm.columns import describe
from cbm.intake import partition_key, submission_of
from checks.offline_docs import CDN_FILES, make_offline, vendor_dir

SHA = "ab" + "0123456789abcdef" * 3 + "0123456789abcd"


def test_a_partition_key_names_the_party_and_file_and_finds_its_submission(tmp_path):
    landing = tmp_path / "landing"
    (landing / SHA[:2]).mkdir(parents=True)
    (landing / SHA[:2] / f"{SHA}.json").write_text("{}")
    key = partition_key("ALPHA", "incidents_2025-11.csv", SHA)
    assert key == f"ALPHA/incidents_2025-11.csv@{SHA[:16]}"
    assert submission_of(landing, key) == SHA
    assert submission_of(landing, SHA) == SHA  # a workdir made before readable keys
    with pytest.raises(ValueError, match="0 landed submissions"):
        submission_of(landing, f"ALPHA/x.csv@{'f' * 16}")


@pytest.mark.parametrize(
    "name",
    ["a,b[1].csv", "x...csv", "sub/dir/incidents x|y.csv", "é∂ƒ.csv", "..", "a\nb.csv"],
)
def test_a_hostile_file_name_gives_a_key_dagster_accepts(name):
    key = partition_key("ALPHA", name, SHA)
    dg.DynamicPartitionsDefinition(name="p").build_add_request([key])  # validates the key
    assert "..." not in key and not set(key) & set(",[]|\n") and key.endswith(SHA[:16])


def test_months_are_only_ever_added_and_a_run_over_all_of_them_takes_every_month(monkeypatch):
    assert months_between("2025-11", "2026-02") == ["2025-11", "2025-12", "2026-01", "2026-02"]
    with dg.DagsterInstance.ephemeral() as instance:
        monkeypatch.setattr(
            instance, "delete_dynamic_partition", lambda *a: pytest.fail("a month was deleted")
        )
        assert register_months(instance, "2026-01", "2026-03") == ["2026-01", "2026-02", "2026-03"]
        # a late report about November: added after the others, nothing deleted
        assert register_months(instance, "2025-11", "2026-02") == [
            "2026-01",
            "2026-02",
            "2026-03",
            "2025-11",
            "2025-12",
        ]
        register_months(instance, "2026-05", "2026-05")  # a gap is filled
        keys = instance.get_dynamic_partitions(monthly_partitions.name)
        assert keys[-2:] == ["2026-04", "2026-05"]
        assert sorted(keys) == months_between("2025-11", "2026-05")
        assert register_months(instance, "2026-05", "2026-05") == keys  # what a run covers


def test_months_another_process_added_meanwhile_are_kept():
    with dg.DagsterInstance.ephemeral() as instance:
        register_months(instance, "2026-01", "2026-01")
        known = instance.get_dynamic_partitions

        def stale(name):  # read before the other process added February
            keys = known(name)
            instance.add_dynamic_partitions(name, ["2026-02"])
            return [k for k in keys if k != "2026-02"]

        instance.get_dynamic_partitions = stale
        register_months(instance, "2026-01", "2026-03")
        instance.get_dynamic_partitions = known
        assert known(monthly_partitions.name) == ["2026-01", "2026-02", "2026-03"]


def test_every_declared_column_has_a_meaning():
    missing = [
        (table, c.name)
        for table, schema in _declared_schemas().items()
        for c in schema.columns
        if not c.description
    ]
    assert not missing
    assert describe("nowhere", "not_a_column") is None  # the test above can fail
    con = duckdb.connect()
    con.execute("CREATE TABLE incident_clusters (event_id VARCHAR, status VARCHAR)")
    (event_id, status) = table_schema(con, "incident_clusters").columns
    assert "stable" in event_id.description and "definitive" in status.description


def test_data_docs_pages_load_their_scripts_and_styles_from_the_site(tmp_path):
    site = tmp_path / "local_site"
    page = site / "validations" / "incidents" / "run" / "result.html"
    page.parent.mkdir(parents=True)
    (site / "static" / "styles").mkdir(parents=True)
    (site / "static" / "styles" / "data_docs_default_styles.css").write_text(
        "a { background: url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
        "full_logo_dark.png') }"
    )
    page.write_text(
        "".join(f'<script src="{url}"></script>' for url in CDN_FILES)
        + '<img src="https://great-expectations-web-assets.s3.amazonaws.com/logo-long.png?x=1">'
        + "<style>.navbar-brand a { background: url('https://great-expectations-web-assets.s3"
        + ".us-east-2.amazonaws.com/full_logo_dark.png') 0 0 no-repeat; }</style>"
        + '<a href="https://greatexpectations.io">GX</a>'
    )
    assert make_offline(site) == 1
    text = page.read_text()
    assert "cdn" not in text and "unpkg" not in text and "amazonaws" not in text
    assert '"../../../static/vendor/jquery.min.js"' in text
    assert "url('../../../static/images/logo-long-vector.svg')" in text  # the inlined dark logo
    assert 'href="https://greatexpectations.io"' in text  # a link, not a load
    for local in set(CDN_FILES.values()):
        assert (site / "static" / "vendor" / local).is_file(), local
    assert (
        "amazonaws" not in (site / "static" / "styles" / "data_docs_default_styles.css").read_text()
    )
    # a per-kind suite's "Failed" is quarantine by design, and its page says so once (#38)
    pages = {
        name: site.joinpath(*path)
        for name, path in {
            "kind": ("validations", "compliance", "r", "x.html"),
            "warehouse": ("validations", "warehouse_submissions", "r", "x.html"),
            "index": ("index.html",),
        }.items()
    }
    for page_path in pages.values():
        page_path.parent.mkdir(parents=True, exist_ok=True)
        page_path.write_text("<html><body class='x'><p>Failed</p></body></html>")
    make_offline(site)
    make_offline(site)  # a second build leaves one note, not two
    notes = {n: p.read_text().count("quarantined, by design") for n, p in pages.items()}
    assert notes == {"kind": 1, "warehouse": 0, "index": 1}
    assert "<body class='x'><div id=\"cbm-quarantine-by-design\"" in pages["kind"].read_text()
    licences = {p.name for p in vendor_dir().glob("LICENSE.*")}
    assert {"LICENSE.jquery", "LICENSE.bootstrap", "LICENSE.fontawesome"} <= licences
    assert (vendor_dir() / "README.md").is_file()


def test_cbm_docs_serves_the_site_over_http(tmp_path):
    site = tmp_path / "work" / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    site.mkdir(parents=True)
    (site / "index.html").write_text("<h1>Data Docs</h1>")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "docs",
            "--workdir",
            str(tmp_path / "work"),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert f"http://127.0.0.1:{port}/index.html" in server.stdout.readline()
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html") as r:
                    assert b"Data Docs" in r.read()
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("cbm docs did not answer")
    finally:
        server.terminate()
        server.communicate(timeout=10)  # waits, and closes its pipe


def test_cbm_docs_outlives_a_browser_that_hangs_up_mid_page(tmp_path):
    """A browser that leaves a page before it has loaded closes the connection while the
    server is still writing. That must cost the one request, not the server: with SIGPIPE
    set to its default (as `cbm` once did for `cbm status | head`) the process died without
    a word, and the browser suite met a refused connection."""
    site = tmp_path / "work" / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    site.mkdir(parents=True)
    (site / "index.html").write_text("<h1>Data Docs</h1>")
    (site / "large.js").write_bytes(b"x" * 16_000_000)  # more than the socket buffers hold
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "docs", "--workdir", str(tmp_path / "work")]
        + ["--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert f"http://127.0.0.1:{port}/index.html" in server.stdout.readline()
        for reset in (False, True) * 3:  # hang up at once, as a close or with a reset
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                client.sendall(b"GET /large.js HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert client.recv(1024).startswith(b"HTTP/1.0 200")
                if reset:
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            time.sleep(0.3)
            assert server.poll() is None, f"cbm docs died (exit {server.returncode})"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as r:
            assert b"Data Docs" in r.read()
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
    assert "Traceback" not in err, err  # a hung-up client is not an error worth a page


def _outcomes(instance) -> dict[str, object]:
    """The latest submission_outcome evaluation of each partition."""
    key = dg.AssetCheckKey(dg.AssetKey("validation_findings"), "submission_outcome")
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=1000)
    latest = {}
    for record in history:  # newest first
        evaluation = record.event.dagster_event.event_specific_data
        latest.setdefault(evaluation.partition, evaluation)
    return latest


def test_each_submission_partition_says_what_came_of_it(generated_run, monkeypatch):
    """cbm run ingests a range of partitions in one run: each still gets its own outcome."""
    from dagster._core.instance.ref import InstanceRef

    project, _ = generated_run
    # the instance's event log is named relative to its home, as every Dagster process finds
    # it: through DAGSTER_HOME
    monkeypatch.setenv("DAGSTER_HOME", str(project.root / "dagster_home"))
    expected = {
        partition_key(party, name, sha): (status, read, accepted, quarantined)
        for sha, party, name, status, read, accepted, quarantined in project.query(
            "SELECT sha256, party_code, file_name, status, rows_read, rows_accepted, "
            "rows_quarantined FROM submissions"
        )
    }
    assert {s for s, *_ in expected.values()} >= {"accepted", "partial", "rejected"}
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(project.root / "dagster_home"))) as i:
        outcomes = _outcomes(i)
        for key, (status, read, accepted, quarantined) in expected.items():
            evaluation = outcomes[key]
            assert evaluation.passed == (status == "accepted"), key
            assert evaluation.severity == dg.AssetCheckSeverity.WARN
            assert f"{status}, {read:,} rows read = {accepted:,} accepted" in evaluation.description
            meta = evaluation.metadata
            assert meta["status"].value == status and meta["rows_quarantined"].value == quarantined
            if status != "accepted":
                assert meta["reasons"].value.startswith("- "), key  # every rule, with its reason
            # it names the partition's materialization it checked: the UI counts it as current
            assert evaluation.target_materialization_data is not None, key
        records = i.fetch_materializations(dg.AssetKey("validation_findings"), limit=1000).records
        by_partition = {r.asset_materialization.partition: r for r in records}
        for key, (status, *_) in expected.items():
            meta = by_partition[key].asset_materialization.metadata
            assert meta["status"].value == status and meta["party"].value == key.split("/")[0]


def test_only_pages_written_by_this_build_are_rewritten(tmp_path):
    import os

    site = tmp_path / "local_site"
    (site / "static").mkdir(parents=True)
    old, new = site / "old.html", site / "new.html"
    for page in (old, new):
        page.write_text(f'<script src="{next(iter(CDN_FILES))}"></script>')
    os.utime(old, (1_000_000, 1_000_000))  # rendered by an earlier build
    assert make_offline(site, since=2_000_000) == 1
    assert "cdn" in old.read_text() and "cdn" not in new.read_text()
