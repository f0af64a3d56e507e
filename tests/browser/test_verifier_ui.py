"""What a verifier sees in the Dagster UI and the Data Docs of the demo, offline.

Each test opens pages in Chromium and asserts on the text a person reads; the ``page``
fixture fails a test on a console error or a request to a host other than 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request

from assets.stages import STAGES
from cbm.intake import partition_key, read_landing_meta

SLOW = 60_000  # ms: the UI's first load of a page on a busy two-core machine
SCHEMA = "label ... on TableSchemaMetadataEntry { schema { columns { name description } } }"


def graphql(deployment, query: str) -> dict:
    request = urllib.request.Request(
        f"{deployment.ui}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.load(r)["data"]


def open_page(page, url: str, wait_for: str):
    page.page.goto(url)
    page.page.get_by_text(wait_for, exact=False).first.wait_for(timeout=SLOW)
    return page.page


def body(p) -> str:
    return p.inner_text("body")


def key_of(deployment, sha: str) -> str:
    meta = read_landing_meta(deployment.workdir / "landing", sha)
    return partition_key(meta["party_dir"], meta["file_name"], sha)


def test_the_lineage_shows_every_stage(page, deployment):
    p = open_page(page, f"{deployment.ui}/asset-groups", "Global asset lineage")
    p.get_by_text("indicators", exact=True).first.wait_for(timeout=SLOW)
    text = body(p)
    for group in STAGES:
        assert group in text
    page.shot("01-lineage")


def _assets_by_group() -> dict[str, list[str]]:
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    groups: dict[str, list[str]] = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, []).append(key.to_user_string())
    return {g: sorted(names) for g, names in groups.items()}


def test_each_stage_lineage_is_readable_whole(page, deployment):
    """One stage at a time (the selection ``group:"STAGE"``), the graph fits the page and the
    list beside it names every asset of the stage in full: the graph's own labels cut long
    names, the whole graph at once cannot be read (verifier guide, "Lineage")."""
    groups = _assets_by_group()
    assert sorted(groups) == sorted(STAGES)
    for n, group in enumerate(STAGES, start=1):
        selection = urllib.parse.quote(f'group:"{group}"')
        p = open_page(page, f"{deployment.ui}/asset-groups~{selection}/", groups[group][0])
        for name in groups[group]:
            p.get_by_text(name, exact=True).first.wait_for(timeout=SLOW)
        listed = [line.strip() for line in body(p).splitlines()]
        missing = [name for name in groups[group] if name not in listed]
        assert not missing, (group, missing)
        others = [a for g, names in groups.items() if g != group for a in names]
        assert not [a for a in others if a in listed and a not in STAGES], group
        page.shot(f"01-lineage-{n}-{group}")


def test_every_asset_has_its_description_and_column_meanings(page, deployment):
    from pipelines.definitions import defs

    nodes = graphql(
        deployment,
        "{ assetNodes { assetKey { path } description "
        f"metadataEntries {{ {SCHEMA} }} assetMaterializations(limit: 1) "
        f"{{ metadataEntries {{ {SCHEMA} }} }} }} }}",
    )["assetNodes"]
    assert len(nodes) == len(list(defs.resolve_asset_graph().get_all_asset_keys()))
    for node in nodes:
        # what the UI renders as Markdown: an angle bracket outside code would vanish
        outside_code = re.sub(r"`[^`]*`", "", node["description"] or "")
        assert node["description"] and "<" not in outside_code, node["assetKey"]
        entries = node["metadataEntries"] + [
            e for m in node["assetMaterializations"] for e in m["metadataEntries"]
        ]
        columns = [c for e in entries for c in (e.get("schema") or {}).get("columns", [])]
        assert columns, node["assetKey"]  # every asset says what its columns are
        for column in columns:
            assert column["description"], (node["assetKey"], column["name"])
    p = open_page(page, f"{deployment.ui}/assets/landed_submissions", "rejected whole here")
    p.get_by_text("the party directory the file was handed in under").wait_for(timeout=SLOW)
    text = body(p)
    assert "landing/" in text and "rejected whole here" in text
    assert "the party directory the file was handed in under" in text  # a column's meaning
    page.shot("02-asset-landed_submissions")


def test_every_asset_page_opens_with_its_description_and_row_count(page, deployment):
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        name = key.to_user_string()
        description = " ".join(graph.get(key).description.split())
        p = open_page(page, f"{deployment.ui}/assets/{name}", "Description")
        # the description as written, rendered whole (Markdown code spans lose their backticks)
        p.get_by_text(description.replace("`", "")[:40], exact=False).first.wait_for(timeout=SLOW)
        p.get_by_text("Columns").first.wait_for(timeout=SLOW)
        page.shot(f"asset-{name}")


def test_a_rejected_submission_says_who_what_and_why_on_its_partition(page, deployment):
    sha, party, name, reason = deployment.query(
        "SELECT s.sha256, s.party_code, s.file_name, q.reason FROM submissions s "
        "JOIN quarantine q ON q.submission_sha = s.sha256 AND q.row_number IS NULL "
        "WHERE s.status = 'rejected' ORDER BY s.party_code, s.file_name LIMIT 1"
    )[0]
    key = key_of(deployment, sha)
    assert key.startswith(f"{party}/{name}@")  # recognisable without a lookup
    url = (
        f"{deployment.ui}/assets/validation_findings?view=partitions&partition="
        + urllib.parse.quote(key, safe="")
    )
    p = open_page(page, url, "rows_quarantined")
    p.get_by_text(reason.split(": ")[-1][:40], exact=False).first.wait_for(timeout=SLOW)
    text = body(p)
    assert key in text
    assert "rejected" in text and name in text and party in text
    assert " ".join(reason.split()) in " ".join(text.split())  # the reason in full
    page.shot("03-rejected-submission-partition")


def test_one_page_lists_a_partys_files_not_accepted_whole_and_why(page, deployment):
    """The submissions asset's table (warehouse/sql/queries/submissions.sql, listed): every
    rejected or partial file of a party, its file name in full and why, read off one page."""
    from warehouse.queries import query

    listed = deployment.query(query("submissions.listed"), {"limit": 500})
    party = next(r[0] for r in listed if r[2] in ("rejected", "partial"))
    mine = [r for r in listed if r[0] == party and r[2] in ("rejected", "partial")]
    p = open_page(page, f"{deployment.ui}/assets/submissions?view=events", "why")
    p.get_by_text(mine[0][1], exact=True).first.wait_for(timeout=SLOW)
    text = " ".join(body(p).split())
    for _, file_name, _, why, *_, submission in mine:
        assert file_name in text and why in text and submission in text, (file_name, why)
    p.mouse.move(900, 600)  # the event's panel scrolls on its own: the table to the top
    p.mouse.wheel(0, 650)
    p.wait_for_timeout(500)
    page.shot("05b-submissions-why")


def test_a_partial_submission_warns_on_its_own_partition_check(page, deployment):
    sha, quarantined = deployment.query(
        "SELECT sha256, rows_quarantined FROM submissions WHERE status = 'partial' "
        "ORDER BY rows_quarantined DESC, party_code, file_name LIMIT 1"
    )[0]
    key = key_of(deployment, sha)
    p = open_page(
        page, f"{deployment.ui}/assets/validation_findings?view=checks", "submission_outcome"
    )
    p.get_by_text("submissions not accepted whole").first.wait_for(timeout=SLOW)
    text = body(p)
    partial, rejected, total = deployment.query(
        "SELECT count(*) FILTER (WHERE status = 'partial'), "
        "count(*) FILTER (WHERE status = 'rejected'), count(*) FROM submissions"
    )[0]
    # the state of every submission, this run's beside it (the demo is one run)
    assert (
        f"{partial + rejected} of {total} submissions not accepted whole "
        f"({partial + rejected} of {total} in this run)" in text
    )
    page.shot("04-submission-outcome-check")
    p.get_by_text("Partitions", exact=True).last.click()
    # each file's own evaluation: a warning for every file not accepted whole
    p.get_by_text(f"Failed ({partial + rejected})").first.wait_for(timeout=SLOW)
    assert f"Passed ({total - partial - rejected})" in body(p)
    page.shot("04b-submission-outcome-by-partition")
    evaluations = graphql(
        deployment,
        '{ assetCheckExecutions(assetKey: {path: ["validation_findings"]}, '
        'checkName: "submission_outcome", limit: 500) { evaluation { partition success '
        "severity description } } }",
    )["assetCheckExecutions"]
    mine = [e["evaluation"] for e in evaluations if (e["evaluation"] or {}).get("partition") == key]
    assert mine and not mine[0]["success"] and mine[0]["severity"] == "WARN"
    assert f"{quarantined:,} quarantined" in mine[0]["description"]


def test_the_quarantine_lists_every_row_with_its_full_reason(page, deployment):
    rows = deployment.query(
        "SELECT count(*), max(length(reason)) FROM quarantine WHERE severity = 'critical'"
    )[0]
    longest = deployment.query(
        "SELECT reason FROM quarantine WHERE severity = 'critical' ORDER BY length(reason) DESC, reason LIMIT 1"
    )[0][0]
    # the latest materialization's metadata: the list itself, in a table
    p = open_page(page, f"{deployment.ui}/assets/quarantine?view=events", "critical_findings")
    shown = body(p)
    quarantined, whole = deployment.query(
        "SELECT sum(rows_quarantined), count(*) FILTER (WHERE status = 'rejected' AND rows_read = 0) "
        "FROM submissions"
    )[0]
    assert (
        f"All {rows[0]:,} findings are listed in quarantined: {quarantined:,} rows quarantined "
        f"and {whole:,} files rejected whole" in " ".join(shown.split())
    )
    assert " ".join(longest.split()) in " ".join(shown.split())
    page.shot("05-quarantine-list")


def test_suite_checks_pass_saying_what_they_quarantined_by_design(page, deployment):
    p = open_page(page, f"{deployment.ui}/assets/reports_incidents?view=checks", "suite_incidents")
    p.get_by_text("quarantined by design").first.wait_for(timeout=SLOW)
    text = body(p)
    assert "Failed" not in text
    page.shot("06-suite-check-passes")
    checks = graphql(
        deployment,
        '{ assetNodes(assetKeys: [{path: ["release_context"]}]) { assetChecksOrError { '
        "... on AssetChecks { checks { name executionForLatestMaterialization { evaluation { success } } } } } } }",
    )["assetNodes"][0]["assetChecksOrError"]["checks"]
    assert checks and all(
        c["executionForLatestMaterialization"]["evaluation"]["success"] for c in checks
    )


def test_events_and_verdicts_are_broken_down_by_status(page, deployment):
    definitive = deployment.query(
        "SELECT count(*) FROM incident_clusters WHERE status = 'definitive'"
    )[0][0]
    # the latest materialization: counts, lists and breakdowns, as tables
    p = open_page(
        page, f"{deployment.ui}/assets/incident_clusters?view=events", "by_category_and_status"
    )
    p.get_by_text("events_definitive").first.scroll_into_view_if_needed()
    text = body(p)
    assert "events_definitive" in text and f"{definitive:,}" in text
    assert "by_month_and_status" in text and "definitive_events" in text
    page.shot("07-events-by-status")
    p = open_page(
        page, f"{deployment.ui}/assets/compliance_verdicts?view=events", "by_verdict_and_status"
    )
    assert "verdicts_missed" in body(p)
    page.shot("08-verdicts")


def test_indicator_months_start_with_the_data(page, deployment):
    first, last = deployment.query("SELECT min(period), max(period) FROM indicator_values")[0]
    p = open_page(page, f"{deployment.ui}/assets/indicator_values?view=partitions", "Partitions")
    p.get_by_text(first, exact=True).first.wait_for(timeout=SLOW)
    text = body(p)
    months = graphql(
        deployment, '{ assetNodes(assetKeys: [{path: ["indicator_values"]}]) { partitionKeys } }'
    )["assetNodes"][0]["partitionKeys"]
    assert months[0] == first and months[-1] >= last
    assert f"Materialized ({len(months)})" in text and "Missing (0)" in text
    page.shot("09-indicator-months")


def test_cbm_runs_appear_in_each_jobs_run_history(page, deployment):
    job = "indicators_and_release"  # cbm run's last run
    p = open_page(page, f"{deployment.ui}/locations/cbm_verify/jobs/{job}/runs", job)
    p.get_by_text("Success").first.wait_for(timeout=SLOW)
    assert "No runs" not in body(p)
    page.shot("10-job-run-history")


def test_data_docs_work_offline(page, deployment):
    link = graphql(
        deployment,
        '{ assetNodes(assetKeys: [{path: ["validation_findings"]}]) { '
        "assetMaterializations(limit: 1) { metadataEntries { label ... on UrlMetadataEntry { url } } } } }",
    )["assetNodes"][0]["assetMaterializations"][0]["metadataEntries"]
    url = next(e["url"] for e in link if e["label"] == "data_docs")
    assert url == f"{deployment.docs}/index.html"  # http, not file://: the UI's link opens
    p = open_page(page, url, "Validation Results")
    p.locator("table tbody tr").first.wait_for(timeout=SLOW)
    listed = p.locator("table tbody tr").count()
    assert listed >= 7  # every suite's latest result at least
    page.shot("11-data-docs-index")
    p.locator("table tbody tr").first.click()
    p.get_by_text("Expectation Suite").first.wait_for(timeout=SLOW)
    # the pass/fail icons are font-awesome glyphs: the vendored font must have loaded
    p.wait_for_function("document.fonts.check('900 16px \"Font Awesome 6 Free\"')", timeout=SLOW)
    assert p.locator(".fa-check-circle, .fa-times").count() > 0
    # a rule that passed says what it found
    assert p.get_by_text("0% unexpected").count() > 0
    assert p.get_by_text("unknown %").count() == 0
    page.shot("12-data-docs-result")
    href = p.locator("a[href*='expectations/']").first.get_attribute("href")
    assert href
    response = p.goto(urllib.parse.urljoin(p.url, href))
    assert response.status == 200
    p.get_by_text("Expectation Suite").first.wait_for(timeout=SLOW)


def test_data_docs_in_dark_mode_load_nothing_from_outside(dark_page, deployment):
    """GX's dark style sheet drew its logo from a public bucket (#38); in dark mode the index
    and a result page load everything from the site (the fixture refuses and fails any outside
    request), and both say what a per-kind suite's Failed means."""
    p = open_page(dark_page, f"{deployment.docs}/index.html", "Validation Results")
    p.locator("table tbody tr").first.wait_for(timeout=SLOW)
    assert p.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    assert "quarantined, by design" in body(p)
    dark_page.shot("11-data-docs-index-dark")
    p.locator("table tbody tr").first.click()
    p.get_by_text("Expectation Suite").first.wait_for(timeout=SLOW)
    p.wait_for_load_state("networkidle")
    dark_page.shot("12-data-docs-result-dark")


def test_an_unacknowledged_alert_warns_on_the_alerts_asset(page, deployment):
    open_alerts = deployment.query(
        "SELECT alert_id FROM alerts WHERE alert_id NOT IN (SELECT alert_id FROM alert_acks)"
    )
    assert open_alerts  # the demo raises some: dyads that crossed the first threshold
    p = open_page(page, f"{deployment.ui}/assets/alerts?view=checks", "alerts_acknowledged")
    p.get_by_text("not acknowledged").first.wait_for(timeout=SLOW)
    assert f"{len(open_alerts)} alert(s) not acknowledged" in body(p)
    page.shot("17-alerts-check-warns")
    checks = graphql(
        deployment,
        '{ assetNodes(assetKeys: [{path: ["alerts"]}]) { assetChecksOrError { '
        "... on AssetChecks { checks { name executionForLatestMaterialization { evaluation "
        "{ success severity } } } } } } }",
    )["assetNodes"][0]["assetChecksOrError"]["checks"]
    (check,) = checks
    evaluation = check["executionForLatestMaterialization"]["evaluation"]
    assert check["name"] == "alerts_acknowledged"
    assert evaluation == {"success": False, "severity": "WARN"}
    # the alert list itself, on the asset's latest materialization
    p = open_page(page, f"{deployment.ui}/assets/alerts?view=events", "open_alerts")
    assert open_alerts[0][0] in body(p)
    page.shot("18-open-alerts")


def test_party_text_renders_as_text_and_no_red_row_is_shown(page, deployment):
    """Planted by the fixture (conftest.plant_party_text): Markdown links and images in a
    party's values and file name, and TLP:RED canaries. The page fixture fails the test on any
    request outside 127.0.0.1."""
    from tests.browser.conftest import PLANTED_FILE, PLANTED_LINK

    for asset, wait_for, expected in (
        ("anon_incidents", "preview", []),
        # the region as the party wrote it, as text; the RED row's value withheld
        ("quarantine", "critical_findings", [PLANTED_LINK, "[withheld: TLP]"]),
        ("landed_submissions", "preview", []),
    ):
        p = open_page(page, f"{deployment.ui}/assets/{asset}?view=events", wait_for)
        for shown in expected:
            p.get_by_text(shown, exact=False).first.wait_for(timeout=SLOW)
        if expected:  # the planted row in view, for the screenshot
            p.get_by_text(expected[0], exact=False).first.scroll_into_view_if_needed()
        page.shot(f"12-party-text-{asset}")
        text = body(p)
        assert "REDCANARY" not in text, asset
        assert p.locator("a", has_text="Verify your account").count() == 0, asset
        assert p.locator("img[src*='login'], img[src*='beacon'], img[src*='x.png']").count() == 0
    del PLANTED_FILE  # its name is in the partition keys and reasons, escaped like the rest
