"""Data Docs that open offline: every script, style sheet and font GX's pages load from a
CDN is served from the site itself.

GX's page templates load bootstrap, jQuery, popper, bootstrap-table, the datepicker,
font-awesome and vega from public CDNs; on a closed network the index then lists no
validation results and result pages have no pass/fail icons. ``make_offline`` copies the
pinned copies in ``checks/vendor/`` (each with its licence, see ``checks/vendor/README.md``)
into ``<site>/static/vendor/`` and rewrites every page's CDN address into a relative path.
"""

from __future__ import annotations

import os
import re
import shutil
from importlib import resources
from pathlib import Path

# the address GX's templates use -> the vendored file (relative to checks/vendor/)
CDN_FILES = {
    "https://cdn.jsdelivr.net/npm/vega@5": "vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "fontawesome/css/all.min.css"
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": "bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": "bootstrap-prefers-dark.css",
}
# GX's own style sheet draws its dark-mode logo from a public bucket, in static/styles/ and
# inlined in every page's <style> (found by the browser suite in dark mode)
STYLE_URLS = {
    "url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png')": (
        "url('../images/logo-long-vector.svg')"
    ),
}
# GX's pages show its logo from a public bucket, with the data context's id in the address
REMOTE_LOGO = re.compile(r'src="https://great-expectations-web-assets[^"]*"')
VENDOR = "vendor"  # under the site's static/ folder

# The per-kind suites check a party's rows; a row that breaks a rule is quarantined, by design.
# GX marks such a result "Failed", which a reader takes for a failed run: the pages say what it
# means (the suites of the warehouse tables are different: a failure there blocks verification).
BY_DESIGN_SUITES = ("incidents", "compliance", "attestations")
NOTE_ID = "cbm-quarantine-by-design"
BY_DESIGN_NOTE = (
    f'<div id="{NOTE_ID}" class="alert alert-info m-2" role="note">cbm-verify: the suites '
    "<b>incidents</b>, <b>compliance</b> and <b>attestations</b> check each party's rows; a row "
    "that breaks a rule is quarantined, by design, and the result is marked <i>Failed</i>: rows "
    "were set aside, the run did not fail (<code>cbm status --quarantine</code> lists them). "
    "A <i>Failed</i> warehouse suite (<b>warehouse_…</b>) is different: it blocks verification."
    "</div>"
)
BODY = re.compile(r"<body[^>]*>")


def gx_dir_of(workdir: Path) -> Path:
    """The GX project folder of a workdir (its suites, stored results and Data Docs)."""
    return Path(workdir) / "gx"


def data_docs_site(gx_dir: Path) -> Path:
    """Where the Data Docs site of a GX project folder is rendered (``cbm docs`` serves it)."""
    return gx_dir / "gx" / "uncommitted" / "data_docs" / "local_site"


def data_docs_index(gx_dir: Path) -> Path:
    """The index page of that site."""
    return data_docs_site(gx_dir) / "index.html"


def vendor_dir() -> Path:
    return Path(str(resources.files("checks").joinpath("vendor")))


def make_offline(site: Path, since: float | None = None) -> int:
    """Serve every CDN file of the Data Docs site ``site`` from ``site/static/vendor`` and
    point its pages there (``since``: only the pages written since that time, the ones a
    build just rendered; None: every page). Returns the number of pages rewritten."""
    static = site / "static"
    target = static / VENDOR
    if not (target / "vega.min.js").exists():
        shutil.copytree(vendor_dir(), target, dirs_exist_ok=True)
    for css in (static / "styles").glob("*.css"):
        text = css.read_text()
        fixed = text
        for url, local in STYLE_URLS.items():
            fixed = fixed.replace(url, local)
        if fixed != text:
            css.write_text(fixed)
    rewritten = 0
    for page in site.rglob("*.html"):
        if since is not None and page.stat().st_mtime < since:
            continue  # rewritten by an earlier build, untouched since
        text = page.read_text()
        prefix = os.path.relpath(target, page.parent).replace(os.sep, "/")
        fixed = text
        # the longest addresses first: one may be the start of another
        for url in sorted(CDN_FILES, key=len, reverse=True):
            fixed = fixed.replace(f'"{url}"', f'"{prefix}/{CDN_FILES[url]}"')
        images = os.path.relpath(static / "images", page.parent).replace(os.sep, "/")
        fixed = REMOTE_LOGO.sub(f'src="{images}/logo-long-vector.svg"', fixed)
        for url in STYLE_URLS:  # the style sheet GX also inlines in the page
            fixed = fixed.replace(url, f"url('{images}/logo-long-vector.svg')")
        if _says_quarantine_by_design(site, page) and NOTE_ID not in fixed:
            fixed = BODY.sub(lambda m: m.group(0) + BY_DESIGN_NOTE, fixed, count=1)
        if fixed != text:
            page.write_text(fixed)
            rewritten += 1
    return rewritten


def _says_quarantine_by_design(site: Path, page: Path) -> bool:
    """The index and the result pages of the per-kind suites carry the note."""
    parts = page.relative_to(site).parts
    return parts == ("index.html",) or (
        len(parts) > 2 and parts[0] == "validations" and parts[1] in BY_DESIGN_SUITES
    )
