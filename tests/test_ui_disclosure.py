"""The Dagster UI shows no more than a verifier may see (issue #36; docs/verifier-guide.md,
"Who may open the UI"): nothing from a row above TLP:GREEN in any event's metadata, and a
party's text in Markdown metadata escaped so it renders as text. The browser suite checks
the same in Chromium (tests/browser/test_verifier_ui.py)."""

import json
import re

import dagster as dg
import polars as pl

from assets.metadata import md_text
from cbm.protection import redact_identifiers, scrub_expr
from tests.conftest import incident, write_csv

IMAGE = "![b](//beacon.invalid/x.png)"
LINK = "[Verify your account](//phish.invalid/login)"


def hostile_rows() -> list[dict]:
    return [
        incident("HGREENOK", summary=f"{IMAGE} {LINK}"),
        incident("HGREENBAD", region=IMAGE),  # quarantined: the value is shown, as text
        incident("HREDOK", tlp="RED", summary="REDCANARYSUMMARY"),
        incident("HREDBAD", tlp="RED", region="REDCANARYREGION"),
        incident("HAMBERBAD", tlp="AMBER", severity="AMBERCANARYSEVERITY"),
    ]


def every_event_text(instance) -> str:
    """Everything the instance recorded about every run: what the UI reads."""
    texts = []
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            texts.append(dg.serialize_value(entry))
    return "\n".join(texts)


def test_no_row_above_green_reaches_dagster_and_party_text_is_escaped(project):
    write_csv(project.inbox / "ALPHA" / "incidents_hostile.csv", hostile_rows())
    project.run()
    with dg.DagsterInstance.get() as instance:
        text = every_event_text(instance)
    assert "HGREENOK" in text  # the canaries below can be found: the preview is there
    for canary in ("REDCANARY", "HRED", "AMBERCANARY", "HAMBER"):
        assert canary not in text, canary
    assert "[withheld: TLP]" in text
    # nor in the Data Docs a verifier opens, nor in the validation results they are built from
    docs = [f for f in (project.workdir / "gx").rglob("*") if f.is_file()]
    assert any(f.suffix == ".html" for f in docs)
    for f in docs:
        data = f.read_bytes()
        assert b"REDCANARY" not in data and b"AMBERCANARY" not in data, f
    # no Markdown image or link of a party's making survives unescaped anywhere
    markdown = [
        m
        for m in re.findall(r'"md_str": "((?:[^"\\]|\\.)*)"', text)
        if "beacon" in m or "phish" in m
    ]
    for md in markdown:
        assert not re.search(r"(?<!\\)!?(?<!\\)\[[^\]]*(?<!\\)\]\(", json.loads(f'"{md}"')), md


def test_markdown_text_is_escaped_whatever_it_holds():
    for text in (IMAGE, LINK, "<img src=//x.invalid/a>", "https://x.invalid/a", "www.x.invalid"):
        escaped = md_text(text)
        # every bracket, parenthesis, colon, dot and bang escaped; no angle bracket at all
        assert not re.search(r"(?<!\\)[\[\]():.!]", escaped), escaped
        assert "<" not in escaped and ">" not in escaped


def test_the_scrubber_removes_scheme_relative_and_bare_host_urls():
    texts = [
        IMAGE,
        LINK,
        "see phish.invalid/login now",
        "ping beacon.invalid.",
        "Observed near the crossing. 3.5/day, e.g. the U.S. and/or the east bank",
    ]
    frame = pl.DataFrame({"t": texts}).select(
        scrub_expr(pl.col("t"), []).alias("free"),
        redact_identifiers(pl.col("t"), []).alias("coded"),
    )
    assert frame["free"].to_list() == [
        "![b]([url]",
        "[Verify your account]([url]",
        "see [url] now",
        "ping [url].",
        texts[-1],  # ordinary prose is left alone
    ]
    assert not any("invalid" in v for v in frame["coded"].to_list())
