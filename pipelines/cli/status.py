"""``cbm status``: every submission, its accounting and reasons; ``--quarantine``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipelines.cli.base import command
from pipelines.output import EXIT_OK, CannotRun, _check_folder, _count, _say, _show, printable
from warehouse.queries import query

STATUS_FIELDS = (
    "sha256",
    "party",
    "kind",
    "file_name",
    "status",
    "rows_read",
    "rows_accepted",
    "rows_quarantined",
    "reasons",
    "messages",
    "warnings",
    "duplicate_of",
    "superseded_by",
    "copy_of",
    "submission",
)


@command("status", "every submission seen, and why rows were quarantined")
@click.option("--workdir", required=True, help="the workdir of 'cbm run'")
@click.option("--json", is_flag=True, help="one JSON document on stdout")
@click.option(
    "--quarantine",
    is_flag=True,
    help="list every quarantined row and file instead: submission, party, file, row, rule, "
    "column, value and the full reason",
)
@click.option("--party", help="with --quarantine: only this party's submissions")
@click.option("--rule", help="with --quarantine: only this rule (e.g. severity_range)")
def status_command(args) -> int:
    return cmd_status(args)


def cmd_status(args) -> int:
    from warehouse.db import Warehouse, sql_file

    _check_folder("--workdir", Path(args.workdir), must_exist=True)
    path = Path(args.workdir) / "warehouse.duckdb"
    if not path.exists():
        raise CannotRun(
            f"no warehouse in {args.workdir} (has 'cbm run' been run with this --workdir?)"
        )
    if (args.party or args.rule) and not args.quarantine:
        raise CannotRun("--party and --rule narrow --quarantine; add --quarantine")
    with Warehouse(str(path)).connect(read_only=True, readers=True) as con:
        if args.quarantine:
            _check_narrowing(con, args)
            cursor = con.execute(query("cli.quarantine"), {"party": args.party, "rule": args.rule})
            names = [d[0] for d in cursor.description]
            return _print_quarantine(
                [dict(zip(names, r, strict=True)) for r in cursor.fetchall()], args
            )
        rows = con.execute(sql_file("submission_status")).fetchall()
    subs = [
        {k: (dict(v) if isinstance(v, dict) else v) for k, v in zip(STATUS_FIELDS, r, strict=True)}
        for r in rows
    ]
    totals = _status_totals(subs)
    waiting = _waiting(Path(args.workdir))
    if args.json:
        print(
            json.dumps(
                {"submissions": subs, "totals": totals, "waiting": waiting},
                indent=2,
                sort_keys=False,
            )
        )
        return EXIT_OK
    _show(
        f"{'submission':<12} {'party':<12} {'kind':<12} {'status':<9} {'read':>7} {'accepted':>8} "
        f"{'quarant.':>8}  file"
    )
    for s in subs:
        _show(
            f"{s['submission'][:12]} {s['party']:<12} {str(s['kind'] or '-'):<12} {s['status']:<9} "
            f"{s['rows_read']:>7,} {s['rows_accepted']:>8,} {s['rows_quarantined']:>8,}  {s['file_name']}"
        )
        if s["duplicate_of"]:
            _show(f"{'':13}a repeat of {s['duplicate_of']} (the same bytes): counted once")
        if s["superseded_by"]:
            fixed = next((t for t in subs if t["submission"] == s["superseded_by"]), None)
            name = f"{fixed['party']}/{fixed['file_name']}" if fixed else s["superseded_by"][:12]
            _show(f"{'':13}superseded by {name}, handed in again and {fixed and fixed['status']}")
        if s["copy_of"]:
            _show(f"{'':13}a copy of {s['copy_of']} (another party's bytes): rows quarantined")
        for rule, n in s["reasons"].items():
            _show(f"{'':13}{rule} ({n:,}): {s['messages'][rule]}")
        for warning in s["warnings"]:
            _show(f"{'':13}warning: {warning}")
    statuses = ", ".join(f"{n:,} {k}" for k, n in totals["by_status"].items())
    if totals["rejected_superseded"]:
        statuses += f", {totals['rejected_superseded']:,} of the rejected since handed in fixed"
    repeats = f" and {_count(totals['repeats'], 'repeat')}" if totals["repeats"] else ""
    _say("")
    _say(  # our words and numbers only: nothing a party chose
        f"Total: {_count(totals['submissions'], 'submission')}{repeats} ({statuses}); "
        f"{totals['rows_read']:,} rows read = {totals['rows_accepted']:,} accepted + "
        f"{totals['rows_quarantined']:,} quarantined"
    )
    if waiting:
        _say("")
        _say(f"Waiting for a later run (not landed yet): {len(waiting)}")
        for w in waiting:
            _show(f"  {w['path']}: {w['why']}")
    _say("Quarantined rows, in full: cbm status --workdir DIR --quarantine [--party P] [--rule R]")
    return EXIT_OK


def _waiting(workdir: Path) -> list[dict]:
    """What the last look at the inbox left for a later run (a party's files beyond its
    budget, files still being written), from the landing area."""
    from cbm.intake import landing_where, read_waiting
    from cbm.storage import location

    return read_waiting(location(landing_where(workdir)))


def _check_narrowing(con, args) -> None:
    """``--party``/``--rule`` that name nothing in this workdir are a mistake (a typo, a code
    in lower case), not an empty answer: one line naming the ones there are."""
    for flag, value, sql in (
        ("--party", args.party, query("cli.known_parties")),
        ("--rule", args.rule, query("cli.known_rules")),
    ):
        if value is None:
            continue
        known = sorted(v for (v,) in con.execute(sql).fetchall() if v)
        if value not in known:
            near = [k for k in known if k.lower() == value.lower()]
            hint = f" (did you mean {near[0]}?)" if near else ""
            what = (
                ("no submission from that party", "parties")
                if flag == "--party"
                else ("no quarantined row with that rule", "rules")
            )
            raise CannotRun(
                f"{flag} {printable(value)}: {what[0]} in this workdir{hint}; {what[1]} here: "
                + (", ".join(known) or "none")
            )


def _status_totals(subs: list[dict]) -> dict:
    """Counts over submissions (a repeat is a path, not a submission); a rejection that a
    fixed re-send superseded is counted apart."""
    firsts = [s for s in subs if not s["duplicate_of"]]
    by_status: dict[str, int] = {}
    for s in firsts:
        by_status[s["status"]] = by_status.get(s["status"], 0) + 1
    return {
        "submissions": len(firsts),
        "by_status": dict(sorted(by_status.items())),
        "rejected_superseded": sum(1 for s in firsts if s["superseded_by"]),
        "repeats": len(subs) - len(firsts),
        **{k: sum(s[k] for s in subs) for k in ("rows_read", "rows_accepted", "rows_quarantined")},
    }


def _print_quarantine(rows: list[dict], args) -> int:
    if args.json:
        print(json.dumps({"quarantine": rows}, indent=2, sort_keys=False))
        return EXIT_OK
    for r in rows:
        where = "whole file" if r["row_number"] is None else f"row {r['row_number']}"
        column = f" {r['column_name']}={r['value']!r}" if r["column_name"] else ""
        _show(
            f"{r['submission']} {r['party']}/{r['file_name']} {where} [{r['rule']}]{column}: "
            f"{r['reason']}"
        )
    narrowed = " ".join(f"--{k} {v}" for k, v in (("party", args.party), ("rule", args.rule)) if v)
    _show(f"{len(rows):,} quarantined rows and files{' (' + narrowed + ')' if narrowed else ''}")
    return EXIT_OK
