"""The release report: ``report/index.html``, one self-contained page a person reads offline.

Built from the release's own files only (its Parquet products, ``changes/`` and
``dictionary.json``), with Altair charts whose Vega-Lite, Vega and Vega-Embed JavaScript is
inlined once (``vl_convert.javascript_bundle``): the page loads nothing from anywhere. The
same release gives the same bytes: rows are sorted, specs are written with sorted keys, and
no clock is read.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import json
import os
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from cbm.dictionary import DISPUTE_STATUSES, STATUS, VERDICTS
from cbm.files import write_atomic

REPORT = "report/index.html"
# the ladder and verdict colours a reader learns once (colour-blind safe: Okabe-Ito)
EVENT_STATUSES = list(STATUS["events"])  # the ladder, in its order
EVENT_COLOURS = ["#999999", "#E69F00", "#009E73", "#D55E00", "#CCCCCC"]
# escalation levels 0-5: level 0 (below every agreed threshold) neutral, 1-5 orange to red
ESCALATION_COLOURS = ["#d9d9d9", "#fdd49e", "#fdbb84", "#fc8d59", "#e34a33", "#b30000"]
VERDICT_COLOURS = ["#009E73", "#56B4E9", "#F0E442", "#D55E00", "#CC79A7", "#E69F00"]
CHANGE_ORDER = ["status_changed", "revised", "replaced_by", "removed", "added"]  # corrections first
VALIDATE = True  # the chart specs against the Vega-Lite schema (the rows are not: see _spec)
CHANGES_LISTED = 200  # rows of changes/ shown per product (all are in the Parquet)


# The bundle vl-convert 1.9.0.post1 makes for Vega-Lite v6.4 (tests/test_report.py checks it
# against the installed one). A cached copy is used only when it has exactly this hash.
BUNDLE_SHA256 = "3425bd951a44d478d0505c6b5d1e8d57656b6e9a4da7bfe88a718ce61d76e572"


def _cache_dir() -> Path:
    return Path(os.environ.get("CBM_CACHE_DIR") or Path.home() / ".cache" / "cbm-verify")


@functools.cache
def _javascript() -> str:
    """Vega-Embed, Vega-Lite and Vega as one script (the Vega-Lite version Altair writes).
    Bundling takes seconds (benchmarks/README.md, M2); the result is kept in ``$CBM_CACHE_DIR`` (default
    ``~/.cache/cbm-verify``) and reused only when its hash is the pinned one."""
    cached = _cache_dir() / f"vega-bundle-{BUNDLE_SHA256[:16]}.js"
    with contextlib.suppress(OSError):
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == BUNDLE_SHA256:
            return data.decode()
    return _bundle(cached)


def _bundle(cache: Path | None = None) -> str:
    import altair as alt
    import vl_convert

    version = "v" + ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    script = vl_convert.javascript_bundle(vl_version=version)
    if cache is not None and hashlib.sha256(script.encode()).hexdigest() == BUNDLE_SHA256:
        with contextlib.suppress(OSError):  # no cache is only slower
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache, script.encode())
    return script


def _rows(root: Path, product: str) -> list[dict]:
    if not (root / product).is_dir():  # a product with no rows writes no folder
        return []
    dataset = ds.dataset(root / product, format="parquet", partitioning="hive")
    table = dataset.to_table()
    columns = [c for c in table.column_names if c not in ("release_id", "method_version")]
    rows = table.select(columns).to_pylist()
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def _gaps(values: list[dict], months: list[str]) -> list[dict]:
    """A null value for each month inside a line (one subject, indicator and status) where the
    subject has no row of that indicator at all: Vega-Lite breaks the line there instead of
    joining across it (the dictionary says what such a month means). A suppressed month has
    its row, drawn as a cross in its own strip."""
    seen: dict[tuple, set[str]] = {}
    rows: dict[tuple, set[str]] = {}
    for v in values:
        rows.setdefault((v["indicator"], v["subject"]), set()).add(v["period"])
        if not v["suppressed"]:
            seen.setdefault((v["indicator"], v["subject"], v["status"]), set()).add(v["period"])
    gaps = []
    for (indicator, subject, status), have in sorted(seen.items()):
        present = rows[indicator, subject]
        inside = [m for m in months if min(have) < m < max(have) and m not in present]
        gaps += [
            {
                "period": m,
                "subject": subject,
                "indicator": indicator,
                "value": None,
                "status": status,
                "suppressed": False,
            }
            for m in inside
        ]
    return gaps


def _charts(root: Path) -> list[tuple[str, str, dict]]:
    """(anchor, title, Vega-Lite spec) of every chart, in reading order."""
    import altair as alt

    ROWS = alt.NamedData(name="rows")  # the rows are added to each spec by _spec
    indicators, events, compliance = (
        _rows(root, p) for p in ("indicators", "events", "compliance")
    )
    months = sorted({r["period"] for r in indicators + events + compliance})
    x_month = alt.X("period:O", title="month", sort=months)

    # indicators per subject over the months: a dropdown picks the indicator
    values = [
        {
            "period": r["period"],
            "subject": r["subject"],
            "indicator": r["indicator"],
            "value": r["value"],
            "status": r["status"],
            "suppressed": bool(r["suppressed"]),
        }
        for r in indicators
        if r["indicator"] != "escalation_level"
    ]
    values += _gaps(values, months)
    names = sorted({v["indicator"] for v in values}) or ["(none)"]
    pick = alt.param(
        name="indicator_shown",
        value=next((n for n in names if n.startswith("definitive_incidents.total")), names[0]),
        bind=alt.binding_select(options=names, name="indicator "),
    )
    base = alt.Chart(ROWS).transform_filter("datum.indicator == indicator_shown")
    lines = (
        base.transform_filter("!datum.suppressed")
        .mark_line(point=alt.OverlayMarkDef(filled=False, size=60))
        .encode(
            x=x_month,
            y=alt.Y("value:Q", title="value"),
            color=alt.Color("subject:N", title="subject"),
            strokeDash=alt.StrokeDash(
                "status:N",
                title="status",
                scale=alt.Scale(domain=["definitive", "tentative"], range=[[1, 0], [4, 3]]),
            ),
            tooltip=_tooltips("subject:N", "period:O", "value:Q", "status:N"),
        )
    )
    definitive = (
        base.transform_filter("!datum.suppressed && datum.status == 'definitive'")
        .mark_point(filled=True, size=60)
        .encode(x=x_month, y=alt.Y("value:Q"), color=alt.Color("subject:N"))
    )
    suppressed = (
        base.transform_filter("datum.suppressed")
        .mark_point(shape="cross", size=80, color="#666666", filled=True)
        .encode(
            x=x_month,
            y=alt.Y("subject:N", title="suppressed (no value published)"),
            tooltip=[
                *_tooltips("subject:N", "period:O"),
                alt.Tooltip("suppressed:N", title="suppressed"),
            ],
        )
        .properties(height=120)
    )
    indicator_chart = alt.vconcat(
        alt.layer(lines, definitive).properties(width=760, height=300),
        suppressed.properties(width=760),
    ).add_params(pick)

    event_values = [
        {"period": r["period"], "status": r["status"], "category": r["category"]} for r in events
    ]
    by_status = _monthly_bars(
        ROWS,
        x_month,
        alt.Color("status:N", scale=alt.Scale(domain=EVENT_STATUSES, range=EVENT_COLOURS)),
        "by status",
    ).transform_calculate(status_order=f"indexof({json.dumps(EVENT_STATUSES)}, datum.status)")
    by_status = by_status.encode(order=alt.Order("status_order:Q"))
    by_category = _monthly_bars(ROWS, x_month, alt.Color("category:N"), "by category")

    verdicts = [
        {
            "period": r["period"],
            "subject": r["subject"],
            "commitment": r["commitment_id"],
            "verdict": r["verdict"],
            "status": r["status"],
        }
        for r in compliance
    ]
    compliance_chart = (
        alt.Chart(ROWS)
        .mark_rect(stroke="white")
        .encode(
            x=x_month,
            y=alt.Y("subject:N", title=None),
            color=alt.Color("verdict:N", scale=alt.Scale(domain=VERDICTS, range=VERDICT_COLOURS)),
            opacity=_tentative_pale(),
            row=alt.Row("commitment:N", title=None),
            tooltip=_tooltips("commitment:N", "subject:N", "period:O", "verdict:N", "status:N"),
        )
        .properties(width=700)
    )

    dyads = [
        {
            "period": r["period"],
            "dyad": f"{r['subject']} → {r['counterpart']}",
            "level": r["escalation_level"],
            "status": r["status"],
            "suppressed": bool(r["suppressed"]),
        }
        for r in indicators
        if r["indicator"] == "escalation_level"
    ]
    escalation_chart = (
        alt.Chart(ROWS)
        .mark_rect(stroke="white")
        .encode(
            x=x_month,
            y=alt.Y("dyad:N", title=None),
            color=alt.Color(
                "level:O",
                title="escalation level",
                # level 0 (below every agreed threshold) neutral; 1-5 from orange to red
                scale=alt.Scale(domain=list(range(6)), range=ESCALATION_COLOURS),
            ),
            opacity=_tentative_pale(),
            tooltip=_tooltips("dyad:N", "period:O", "level:O", "status:N"),
        )
        .properties(width=700)
    )
    return [
        ("indicators", "Indicators per subject over the months", _spec(indicator_chart, values)),
        ("events-status", "Events per month, by status", _spec(by_status, event_values)),
        ("events-category", "Events per month, by category", _spec(by_category, event_values)),
        (
            "compliance",
            "Compliance: subject × commitment × month",
            _spec(compliance_chart, verdicts),
        ),
        ("escalation", "Escalation level per dyad", _spec(escalation_chart, dyads)),
    ]


def _monthly_bars(data, x_month, colour, title: str):
    """Events per month, stacked by ``colour``'s field."""
    import altair as alt

    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=x_month,
            y=alt.Y("count():Q", title="events"),
            color=colour,
            tooltip=[
                *_tooltips("period:O", colour.shorthand),
                alt.Tooltip("count():Q", title="events"),
            ],
        )
        .properties(width=760, height=260, title=title)
    )


def _tooltips(*shorthands: str) -> list:
    """Tooltip channels made here: Altair turns a bare shorthand string into its channel
    through its schema lookup, which hashes every wrapper class's schema each time (about a
    third of a report's time: benchmarks/README.md, M48). The same spec either way."""
    import altair as alt

    return [alt.Tooltip(shorthand) for shorthand in shorthands]


def _tentative_pale():
    """Tentative cells drawn pale, definitive ones in full colour."""
    import altair as alt

    return alt.Opacity(
        "status:N", scale=alt.Scale(domain=["definitive", "tentative"], range=[1.0, 0.45])
    )


def _spec(chart, rows: list[dict]) -> dict:
    """The Vega-Lite spec of ``chart`` with its rows as the named dataset ``rows`` (Altair
    checks inline data row by row against the schema when it is built: benchmarks/README.md,
    M3)."""
    return chart.to_dict(validate=VALIDATE) | {"datasets": {"rows": rows}}


def _table(columns: list[str], rows: list[list], caption: str = "") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in r)
        + "</tr>"
        for r in rows
    )
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _changes(root: Path, previous: str | None) -> str:
    """Corrections listed row by row, field by field (``changed``); additions counted by month,
    not listed (every row of a first release is one)."""
    parts = [
        "<p>This is the first release: every row is new, counted by month below.</p>"
        if previous is None
        else f"<p>Since release <code>{html.escape(previous)}</code>: corrections (status "
        "changes, revisions, replacements, removals) listed field by field, then additions "
        "counted by month.</p>"
    ]
    order = {c: i for i, c in enumerate(CHANGE_ORDER)}
    for product in ("indicators", "compliance", "events"):
        path = root / "changes" / f"{product}.parquet"
        rows = pq.read_table(path).to_pylist() if path.exists() else []
        rows.sort(key=lambda r: (order.get(r["change"], 99), json.dumps(r, sort_keys=True)))
        counts = {c: sum(1 for r in rows if r["change"] == c) for c in CHANGE_ORDER}
        summary = ", ".join(f"{n:,} {c.replace('_', ' ')}" for c, n in counts.items() if n)
        corrections = [r for r in rows if r["change"] != "added"]
        shown = corrections[:CHANGES_LISTED]
        more = (
            f" The first {len(shown):,} of {len(corrections):,} corrections are listed; "
            f"<code>changes/{product}.parquet</code> has them all."
            if len(corrections) > len(shown)
            else ""
        )
        columns = [c for c in (shown[0] if shown else {}) if c not in ("old_value", "new_value")]
        if product != "events":
            columns = [c for c in columns if c != "replaced_by"]
        month_of = (
            {e["event_id"]: e["period"] for e in _rows(root, "events")}
            if product == "events"
            else {}
        )
        added = Counter(
            r.get("period") or month_of.get(r.get("event_id"), "")
            for r in rows
            if r["change"] == "added"
        )
        by_month = ", ".join(f"{m or 'no month'}: {n:,}" for m, n in sorted(added.items()))
        parts.append(
            f"<h3>{product}</h3><p>{summary or 'no changes'}.{more}</p>"
            + (_table(columns, [[r[c] for c in columns] for r in shown]) if shown else "")
            + (f"<p>Added, by month: {by_month}.</p>" if added else "")
        )
    return "".join(parts)


def _single(root: Path, rel_path: str) -> list[dict]:
    path = root / rel_path
    return pq.read_table(path).to_pylist() if path.exists() else []


def _disputes(root: Path) -> str:
    """Open disputes first, oldest first: what needs the parties' attention."""
    rows = _single(root, "disputes/disputes.parquet")
    open_rows = sorted(
        (r for r in rows if r["status"] == "open"), key=lambda r: (-r["age_days"], r["dispute_id"])
    )
    closed = {s: sum(1 for r in rows if r["status"] == s) for s in DISPUTE_STATUSES[1:]}
    summary = f"{len(open_rows):,} open; closed: " + ", ".join(
        f"{n:,} {s}" for s, n in closed.items()
    )
    columns = [
        "dispute_id",
        "object",
        "event_id",
        "commitment_id",
        "subject",
        "period",
        "opened_on",
        "age_days",
    ]
    table = (
        _table(columns, [[r[c] for c in columns] for r in open_rows[:CHANGES_LISTED]])
        if open_rows
        else "<p>No dispute is open.</p>"
    )
    more = (
        f"<p>The oldest {CHANGES_LISTED:,} are listed; <code>disputes/disputes.parquet</code> "
        "has them all.</p>"
        if len(open_rows) > CHANGES_LISTED
        else ""
    )
    return f"<p>{summary}.</p>{table}{more}"


def _calendar(root: Path, as_of: str) -> str:
    """The calendar entries from the as-of time on (upcoming and recent), in date order."""
    rows = _single(root, "calendar/calendar.parquet")
    since = datetime.fromisoformat(as_of) - timedelta(days=30)
    shown = [r for r in rows if r["ends_at"] >= since]
    shown.sort(key=lambda r: (r["starts_at"], r["entry_id"]))
    columns = [
        "starts_at",
        "ends_at",
        "entry_type",
        "subject",
        "commitment_id",
        "lead_days",
        "lead_time_met",
        "verdict",
        "status",
    ]

    def cell(r, c):
        v = r[c]
        if isinstance(v, datetime) and r["all_day"]:  # ends_at is exclusive, as in iCalendar
            return (v - timedelta(days=1) if c == "ends_at" else v).date().isoformat()
        if isinstance(v, datetime):
            return v.strftime("%Y-%m-%d %H:%M UTC")
        return {True: "yes", False: "no"}.get(v, v) if isinstance(v, bool) else v

    return (
        f"<p>{len(rows):,} entries in <code>calendar/</code>; subscribe to "
        "<code>calendar.ics</code> in the publish folder (it follows LATEST). Shown: the "
        f"{len(shown[:CHANGES_LISTED]):,} entries from 30 days before the as-of time on.</p>"
        + (
            _table(columns, [[cell(r, c) for c in columns] for r in shown[:CHANGES_LISTED]])
            if shown
            else ""
        )
    )


def _dictionary(root: Path) -> str:
    doc = json.loads((root / "dictionary.json").read_text())
    parts = []
    for name, product in doc["products"].items():
        parts.append(f"<h3>{html.escape(name)}</h3><p>{html.escape(product['grain'])}</p>")
        parts.append(
            _table(
                ["column", "type", "meaning"],
                [[c["name"], c["type"], c["meaning"]] for c in product["columns"]],
            )
        )
    parts.append("<h3>Status</h3>")
    for product, meanings in doc["status"].items():
        parts.append(_table([f"{product}: status", "meaning"], sorted(meanings.items())))
    parts.append("<h3>Suppression</h3>")
    parts.append(_table(["suppression", "meaning"], sorted(doc["suppression"].items())))
    parts.append("<h3>Indicators</h3>")
    parts.append(
        _table(
            ["indicator", "unit", "definition"],
            [[i["name"], i["unit"], i["definition"]] for i in doc["indicators"]],
        )
    )
    return "".join(parts)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
td, th { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } caption { text-align: left; font-weight: bold; }
.note { background: #f7f7f2; border-left: 4px solid #E69F00; padding: 0.5em 1em; }
nav a { margin-right: 1em; } code, pre { background: #f4f4f4; }
"""


def script_json(value) -> str:
    """JSON to embed in a ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u`` escapes
    (the same string to a JSON reader), so no registry or party string (``</script>``,
    ``<!--<script>``) can end the element or change how the HTML parser reads it; U+2028 and
    U+2029 are escaped by ``json.dumps`` already."""
    text = json.dumps(value, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def build_report(
    root: Path, release_id: str, as_of: str, method_version: str, previous: str | None = None
) -> bytes:
    """The report of the release whose files are in ``root`` (products, changes, dictionary);
    ``previous``: the release its changes are against (None: the first)."""
    charts = _charts(root)
    script = _javascript().replace("</script", "<\\/script")
    sections = "".join(
        f'<h2 id="{anchor}">{html.escape(title)}</h2><div class="chart" id="chart-{anchor}"></div>'
        for anchor, title, _ in charts
    )
    embeds = "".join(
        f"vegaEmbed('#chart-{anchor}', "
        + script_json(spec)
        + ", {actions: false, renderer: 'svg'}).catch(function (e) { console.error(e); });\n"
        for anchor, _, spec in charts
    )
    nav = "".join(f'<a href="#{a}">{html.escape(t.split(":")[0])}</a>' for a, t, _ in charts)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>cbm-verify release {html.escape(release_id)}</title>
<style>{STYLE}</style>
<script>{script}</script>
</head><body>
<h1>Release {html.escape(release_id)}</h1>
<p>As of {html.escape(as_of)} · method {html.escape(method_version)}</p>
<p class="note">Every figure here comes from this release's files. <b>Definitive</b>: settled
under the agreed method (filled points, solid lines, full colour). <b>Tentative</b>: may
change as reports and attestations arrive (hollow points, dashed lines, pale colour).
<b>Suppressed</b> cells are withheld by disclosure control and drawn as crosses in their own
strip, never as zero. Events include single-source events (status <i>reported</i>).</p>
<nav><a href="#disputes">Open disputes</a>{nav}<a href="#calendar">Calendar</a>
<a href="#changes">What changed</a><a href="#dictionary">Dictionary</a>
<a href="#verify">How to verify</a></nav>
<h2 id="disputes">Open disputes</h2>
{_disputes(root)}
{sections}
<h2 id="calendar">Security calendar</h2>
{_calendar(root, as_of)}
<h2 id="changes">What changed since the previous release</h2>
{_changes(root, previous)}
<h2 id="dictionary">Data dictionary</h2>
{_dictionary(root)}
<h2 id="verify">How to verify this release</h2>
<p>Each file's SHA-256 is in <code>manifest.json</code>; the secretariat signs the manifest
(<code>manifest.json.sig</code>) and member parties may co-sign (<code>cosign/</code>).</p>
<pre>cbm verify-release RELEASE_FOLDER --keys parties.yaml
cbm rederive BUNDLE --release RELEASE_FOLDER   # member parties, from the member bundle</pre>
<p>Without cbm: <code>jq -r '.files[] | "\\(.sha256)  \\(.path)"' manifest.json | sha256sum -c</code>
in the release folder (the consumer guide shows the signature check in Python).</p>
<script>{embeds}</script>
</body></html>
"""
    return page.encode()
