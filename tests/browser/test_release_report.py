"""The release report as a reader opens it: from disk, offline, every chart drawn."""

from cbm.report import REPORT

CHARTS = ("indicators", "events-status", "events-category", "compliance", "escalation")
MARKS = "svg .mark-symbol path, svg .mark-rect path, svg .mark-line path"


def test_the_report_opens_offline_and_draws_every_chart(page, deployment):
    release = (deployment.base / "publish" / "LATEST").read_text().strip()
    report = deployment.base / "publish" / "releases" / release / REPORT
    p = page.page
    p.goto(report.as_uri())
    p.locator(f"#chart-{CHARTS[-1]} svg").wait_for(timeout=60_000)
    for chart in CHARTS:
        drawn = p.locator(f"#chart-{chart}").locator(MARKS).count()
        assert drawn > 0, chart  # marks in the SVG, not merely a spec in the page
    assert f"Release {release}" in p.inner_text("h1")
    page.shot("13-release-report")
    # another indicator from the dropdown redraws the chart
    p.locator("#chart-indicators select").select_option(index=0)
    p.wait_for_timeout(500)
    assert p.locator("#chart-indicators").locator(MARKS).count() > 0
    p.locator("#compliance").scroll_into_view_if_needed()
    page.shot("14-release-report-compliance")
    # served over http by cbm docs --publish: the link on the release asset opens
    url = f"{deployment.docs}/releases/{release}/{REPORT}"
    assert p.goto(url).status == 200
    # and nothing outside the publish folder (a path that climbs out is not found)
    import http.client
    from urllib.parse import urlparse

    where = urlparse(deployment.docs)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    conn.request("GET", "/releases/../../../../etc/passwd")
    assert conn.getresponse().status == 404


def test_the_report_shows_open_disputes_first_and_the_calendar(page, deployment):
    release = (deployment.base / "publish" / "LATEST").read_text().strip()
    p = page.page
    p.goto((deployment.base / "publish" / "releases" / release / REPORT).as_uri())
    headings = [h.strip() for h in p.locator("h2").all_inner_texts()]
    assert headings[0] == "Open disputes"  # before every chart
    import pyarrow.parquet as pq

    folder = deployment.base / "publish" / "releases" / release
    published = pq.read_table(folder / "disputes" / "disputes.parquet").to_pylist()
    open_ids = [r["dispute_id"] for r in published if r["status"] == "open"]
    shown = p.locator("#disputes + p + table tbody tr").all_inner_texts()
    assert open_ids and len(shown) == len(open_ids)
    assert {line.split()[0] for line in shown} == set(open_ids)
    assert p.locator("#disputes + p").inner_text().startswith(f"{len(open_ids)} open")
    page.shot("15-release-report-disputes")
    p.locator("#calendar").scroll_into_view_if_needed()
    calendar = p.locator("#calendar + p + table")
    assert "milestone" in calendar.inner_text() and "upcoming" in calendar.inner_text()
    page.shot("16-release-report-calendar")
    # the subscription address cbm docs --publish serves: the newest release's calendar
    import urllib.request

    with urllib.request.urlopen(f"{deployment.docs}/calendar.ics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/calendar")
        body = response.read()
    assert (
        body
        == (
            deployment.base / "publish" / "releases" / release / "calendar" / "calendar.ics"
        ).read_bytes()
    )
