"""The release report (report/index.html): self-contained, listed in the manifest, drawn
from the release's own files, and it shows no value that disclosure control withheld."""

import json
import re

import duckdb

from cbm.report import REPORT

EMBED = re.compile(r"vegaEmbed\('#chart-([\w-]+)', (\{.*?\}), \{actions: false")


def _specs(page: str) -> dict[str, dict]:
    return {name: json.loads(spec.replace("<\\/", "</")) for name, spec in EMBED.findall(page)}


def _data(spec) -> list[dict]:
    """Every data row a spec carries (named datasets and inline values, at any depth)."""
    rows = [r for d in spec.get("datasets", {}).values() for r in d]
    stack = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("data"), dict) and "values" in node["data"]:
                rows += node["data"]["values"]
            stack += [v for k, v in node.items() if k != "datasets"]
        elif isinstance(node, list):
            stack += node
    return rows


def _release(project, summary):
    from pathlib import Path

    return Path(summary["release_path"])


def test_the_report_is_one_offline_page_listed_in_the_manifest(generated_run):
    project, summary = generated_run
    root = _release(project, summary)
    page = (root / REPORT).read_text()
    manifest = json.loads((root / "manifest.json").read_text())
    assert REPORT in {f["path"] for f in manifest["files"]}
    # nothing is loaded from anywhere: no src or href to another host, no import
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "<link" not in page
    specs = _specs(page)
    assert set(specs) == {
        "indicators",
        "events-status",
        "events-category",
        "compliance",
        "escalation",
    }
    # the events chart counts what the events product holds
    events = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{root}/events/*/*.parquet', hive_partitioning=true)"
    ).fetchall()[0][0]
    data = _data(specs["events-status"])
    assert len(data) == events
    for section in ("What changed since the previous release", "Data dictionary", "How to verify"):
        assert section in page


def test_no_suppressed_value_reaches_the_report(generated_run):
    project, summary = generated_run
    root = _release(project, summary)
    page = (root / REPORT).read_text()
    suppressed = duckdb.sql(
        f"SELECT subject, period, indicator, counterpart FROM read_parquet("
        f"'{root}/indicators/*/*.parquet', hive_partitioning=true) WHERE suppressed"
    ).fetchall()
    assert suppressed, (
        "the generated inbox should give suppressed cells, or this test proves nothing"
    )
    # what the warehouse knows about those cells, withheld from the Parquet
    withheld = project.query(
        "SELECT subject, period, indicator, value, numerator FROM indicator_values v "
        "JOIN party_directory p ON p.pseudonym = v.subject "
        "WHERE list_contains(?::VARCHAR[], concat_ws('|', coalesce(p.public_label, v.subject), "
        "period, indicator))",
        [[f"{s}|{p}|{i}" for s, p, i, _ in suppressed]],
    )
    cells = {(s, p, i) for s, p, i, _ in suppressed}
    shown = [
        r
        for spec in _specs(page).values()
        for r in _data(spec)
        if (r.get("subject"), r.get("period"), r.get("indicator")) in cells
    ]
    assert shown and all(r["value"] is None and r["suppressed"] for r in shown)
    # a withheld figure with decimals would be recognisable anywhere in the page
    for *_, value, _numerator in withheld:
        if value is not None and value != int(value):
            assert f"{value}" not in page, value


def test_an_empty_release_still_gets_its_report(tmp_path):
    """A release with no rows at all (nothing accepted yet, or all TLP:AMBER) has a page too."""
    from cbm.dictionary import release_dictionary
    from cbm.report import build_report
    from warehouse.db import indicator_catalogue

    (tmp_path / "dictionary.json").write_bytes(release_dictionary(indicator_catalogue(), {}, {}))
    page = build_report(tmp_path, "r-0", "2026-01-01T00:00:00+00:00", "m-0").decode()
    assert len(_specs(page)) == 5 and "no changes" in page


def test_the_inlined_javascript_is_the_pinned_bundle(tmp_path, monkeypatch):
    """The bundle vl-convert makes is the one pinned (an upgrade must update BUNDLE_SHA256),
    and a cached copy that was altered is not used."""
    import hashlib

    from cbm import report

    fresh = report._bundle()
    assert hashlib.sha256(fresh.encode()).hexdigest() == report.BUNDLE_SHA256
    monkeypatch.setenv("CBM_CACHE_DIR", str(tmp_path))
    report._javascript.cache_clear()
    try:
        assert report._javascript() == fresh  # made and cached
        (cached,) = tmp_path.glob("vega-bundle-*.js")
        cached.write_text("alert('not vega')")
        report._javascript.cache_clear()
        assert report._javascript() == fresh  # the altered copy is ignored and replaced
        assert cached.read_text() == fresh
    finally:
        report._javascript.cache_clear()


def test_escalation_level_zero_is_neutral_and_the_levels_run_orange_to_red():
    from cbm.report import ESCALATION_COLOURS

    grey, *levels = ESCALATION_COLOURS
    assert len(levels) == 5
    r, g, b = (int(grey[i : i + 2], 16) for i in (1, 3, 5))
    assert r == g == b  # no hue: nothing crossed
    reds = [int(c[1:3], 16) - int(c[3:5], 16) for c in levels]
    assert reds == sorted(reds) and reds[0] > 0  # ever redder


def test_a_line_breaks_at_a_month_without_a_row_instead_of_joining_across_it(generated_run):
    """A month with no row of an indicator (no definitive incident: zero; no occurrence: no
    figure, as dictionary.json says) gets a null point, so the line is not drawn across it."""
    project, summary = generated_run
    root = _release(project, summary)
    page = (root / REPORT).read_text()
    rows = [r for r in _data(_specs(page)["indicators"]) if "indicator" in r]
    gaps = [r for r in rows if r["value"] is None and not r["suppressed"]]
    assert gaps, "the generated release should have a subject skipping a month"
    have = {(r["subject"], r["indicator"], r["period"]) for r in rows if r not in gaps}
    published = duckdb.sql(
        f"SELECT subject, indicator, period FROM read_parquet('{root}/indicators/*/*.parquet', "
        "hive_partitioning=true) WHERE indicator <> 'escalation_level'"
    ).fetchall()
    assert have == set(published)  # the chart's rows are the product's, gaps aside
    for gap in gaps:  # a gap is a month without a row, inside that line's months
        assert (gap["subject"], gap["indicator"], gap["period"]) not in set(published)
        months = sorted(
            r["period"]
            for r in rows
            if (r["subject"], r["indicator"], r["status"])
            == (gap["subject"], gap["indicator"], gap["status"])
            and r["value"] is not None
        )
        assert months[0] < gap["period"] < months[-1]
    dictionary = json.loads((root / "dictionary.json").read_text())
    assert "No row is not a missing figure" in dictionary["products"]["indicators"]["grain"]
