"""``cbm``: the operator interface (contract §6). Runs the same Definitions as Dagster, in-process.

Built with click (which ships with Dagster): this module is the group, and each command
is declared beside its function in the module of its group (``run.py``: generate, run, demo;
``releases.py``: verify-release, rederive, cosign, sign; ...).

Exit codes: 0 success (quarantined rows are not a failure); 1 the run started but a step
failed, or a release does not verify; 2 it could not start (missing inbox, invalid registry,
no key, bad arguments).
"""

from __future__ import annotations

import difflib
import os
import sys

import click

from pipelines.cli.alerts import alerts_command
from pipelines.cli.base import CONTEXT, EPILOG, ReaderGone
from pipelines.cli.docs import docs_command
from pipelines.cli.keys import keygen_command, keygen_pseudonym_command, rotate_key_command
from pipelines.cli.releases import (
    cosign_command,
    rederive_command,
    sign_command,
    verify_release_command,
)
from pipelines.cli.run import demo_command, generate_command, run_command
from pipelines.cli.status import status_command
from pipelines.cli.taxii import taxii_command, taxii_credential_command
from pipelines.cli.warm import warm_command
from pipelines.output import (
    EXIT_READER_GONE,
    EXIT_USAGE,
    CannotRun,
    Progress,
    _to_devnull,
    printable,
)
from pipelines.runner import run_pipeline

# what other modules and the tests take from here: the entry points, the runner's one
# function, and the output helpers
__all__ = [
    "CannotRun",
    "Progress",
    "cli",
    "console_main",
    "main",
    "printable",
    "run_main",
    "run_pipeline",
]


def _show_version(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"cbm-verify {_version()}")
        ctx.exit(0)


@click.group(
    "cbm",
    help="cbm-verify: verification pipeline for confidence-building measures",
    epilog=EPILOG,
    context_settings=CONTEXT,
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="show the version and exit",
)
def cli() -> None:
    """The ``cbm`` group: each command is declared in its own module of this package."""


for _command in (
    generate_command,
    run_command,
    status_command,
    alerts_command,
    rederive_command,
    verify_release_command,
    cosign_command,
    keygen_pseudonym_command,
    rotate_key_command,
    keygen_command,
    sign_command,
    docs_command,
    taxii_command,
    taxii_credential_command,
    warm_command,
    demo_command,
):
    cli.add_command(_command)


def _usage_line(exc: click.UsageError, argv: list[str]) -> str:
    """A usage mistake in one line: what, where, and what to type instead."""
    ctx = exc.ctx
    where = ctx.command_path if ctx is not None else "cbm"
    if isinstance(exc, click.NoSuchOption):
        near = exc.possibilities or difflib.get_close_matches(
            exc.option_name, sorted(_known_options(ctx)), n=1
        )
        hint = f" (did you mean {near[0]}?)" if near else ""
        return f"{where}: unknown option {exc.option_name}{hint} (see '{where} --help')"
    if isinstance(exc, click.exceptions.NoSuchCommand):
        near = exc.possibilities or []
        hint = f" (did you mean {near[0]}?)" if near else ""
        return f"{where}: no command {exc.command_name!r}{hint} (see '{where} --help')"
    if isinstance(exc, click.exceptions.NoArgsIsHelpError) or (
        ctx is not None and ctx.command is cli and not argv
    ):
        names = ", ".join(cli.list_commands(ctx))
        return f"cbm: a command is required: {names} (see 'cbm --help')"
    if isinstance(exc, click.MissingParameter) and ctx is not None:
        # every required option the line lacks; a positional only as click names it (which
        # words are positionals is click's to tell, not ours)
        missing = [
            param.opts[0]
            for param in ctx.command.params
            if isinstance(param, click.Option) and param.required and not _given(param, argv)
        ]
        if isinstance(exc.param, click.Argument):
            missing.insert(0, exc.param.human_readable_name)
        missing = missing or ["an argument"]
        return f"{where}: required: {', '.join(missing)} (see '{where} --help')"
    if isinstance(exc, click.BadParameter) and exc.param is not None:
        name = exc.param.opts[0] if isinstance(exc.param, click.Option) else exc.param.name
        return f"{where}: {name}: {exc.message} (see '{where} --help')"
    return f"{where}: {exc.format_message()} (see '{where} --help')"


def _given(option: click.Option, argv: list[str]) -> bool:
    return any(word.split("=", 1)[0] in option.opts for word in argv)


def _known_options(ctx: click.Context | None) -> set[str]:
    command = ctx.command if ctx is not None else cli
    return {opt for param in command.params for opt in getattr(param, "opts", [])}


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("cbm-verify")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        code = cli.main(args=argv, prog_name="cbm", standalone_mode=False)
    except click.UsageError as exc:
        print(_usage_line(exc, argv), file=sys.stderr)
        return EXIT_USAGE
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    except click.Abort:  # Ctrl-C while click itself reads or prompts
        return 130
    except ReaderGone as exc:
        raise exc.__cause__ from None  # console_main ends quietly
    return EXIT_USAGE if code is None else code


def run_main(argv: list[str] | None = None) -> int:
    """``main`` as a process runs it: standard output flushed, and a reader of it that left
    first ends the command quietly (``EXIT_READER_GONE``). The warm process's children
    (``pipelines.warm``) run their command through it too."""
    try:
        code = main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        _to_devnull(sys.stdout)
        code = EXIT_READER_GONE
    sys.stderr.flush()
    return code


def console_main() -> None:
    """Console-script entry point.

    ``cbm run`` and ``cbm demo`` run in this checkout's warm process when one is running
    (``cbm warm start``, ``pipelines.warm``): this process then only forwards signals and
    exits with the command's code.

    SIGPIPE stays ignored, as Python sets it: a connection that a peer closes (a browser
    leaving a `cbm docs` page, an alert endpoint, object storage) raises an error where it
    happened instead of ending the process. Only a reader of standard output that leaves
    first ends a command, quietly (``EXIT_READER_GONE``).

    Exits with ``os._exit`` after flushing: DuckDB's bindings print "nanobind: leaked ..."
    warnings at interpreter shutdown while GX still holds type objects; they say nothing about
    the run and would bury its last line.
    """
    from pipelines.warm import delegate

    try:
        code = delegate(sys.argv[1:])
    except KeyboardInterrupt:  # before the warm process answered: it ends what it started
        from pipelines.output import EXIT_INTERRUPTED, interrupted_line

        print(interrupted_line(sys.argv[1] if len(sys.argv) > 1 else None), file=sys.stderr)
        code = EXIT_INTERRUPTED
    if code is None:
        code = run_main()
    else:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
