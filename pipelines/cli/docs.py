"""``cbm docs``: the Data Docs and releases over http, for the UI's links."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.cli.base import WholeNumber, command
from pipelines.output import EXIT_OK, CannotRun, _check_folder, _say


@command(
    "docs",
    "serve the Great Expectations Data Docs on localhost, for the Dagster UI's data_docs links",
)
@click.option("--workdir", required=True, help="the workdir of 'cbm run'")
@click.option(
    "--publish",
    help="also serve this publish folder's release reports under /releases/ (the links of "
    "the release asset)",
)
@click.option(
    "--port",
    type=WholeNumber(1, 65535),
    default=8765,
    help="port on 127.0.0.1 (default 8765, the address the data_docs links use)",
)
def docs_command(args) -> int:
    return cmd_docs(args)


def cmd_docs(args) -> int:
    """Serve the Data Docs site over http on 127.0.0.1 until interrupted."""
    import functools
    import http.server
    import urllib.parse

    from checks.offline_docs import data_docs_index, data_docs_site, gx_dir_of

    workdir = Path(args.workdir)
    _check_folder("--workdir", workdir, must_exist=True)
    site = data_docs_site(gx_dir_of(workdir))
    if not data_docs_index(gx_dir_of(workdir)).is_file():
        raise CannotRun(f"no Data Docs in {workdir} yet: run 'cbm run' first ({site})")

    releases = None
    if args.publish:
        _check_folder("--publish", Path(args.publish), must_exist=True)
        releases = (Path(args.publish) / "releases").resolve()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path):
            # /releases/<id>/... is the publish folder's (the release reports), /calendar.ics
            # its subscription copy of the newest calendar; the rest Data Docs
            if releases is not None and path.split("?", 1)[0] == "/calendar.ics":
                return str(releases.parent / "calendar.ics")
            if releases is not None and path.startswith("/releases/"):
                wanted = urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0])
                target = (releases / wanted.removeprefix("/releases/")).resolve()
                inside = target == releases or releases in target.parents
                return str(target if inside else releases / "not-found")  # no way out
            return super().translate_path(path)

        def log_message(self, *args):  # one line per page would drown the address
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # a browser that leaves a page before it has loaded hangs up mid-answer
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    try:
        server = Server(("127.0.0.1", args.port), functools.partial(Quiet, directory=str(site)))
    except OSError as exc:
        raise CannotRun(
            f"--port {args.port}: cannot listen on 127.0.0.1 ({exc.strerror})"
        ) from None
    _say(f"Data Docs of {workdir}: http://127.0.0.1:{args.port}/index.html (Ctrl-C stops)")
    if releases is not None:
        _say(f"release reports: http://127.0.0.1:{args.port}/releases/RELEASE_ID/report/index.html")
        _say(f"security calendar (subscribe): http://127.0.0.1:{args.port}/calendar.ics")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return EXIT_OK
