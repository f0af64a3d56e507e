"""The security calendar as iCalendar (RFC 5545): ``calendar/calendar.ics`` of a release.

Built from the release's calendar rows (the same ones as ``calendar/calendar.parquet``) with
the ``icalendar`` library. Deterministic: UIDs are the entries' ids, DTSTAMP is the release's
as-of time, entries are ordered by start and id; no wall-clock time enters the bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import icalendar
import pyarrow as pa

PRODID = "-//cbm-verify//security calendar//EN"
UID_DOMAIN = "cbm-verify"


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _description(row: dict) -> str:
    lines = [f"Commitment: {row['commitment_id']}"]
    if row["entry_type"] == "notified_activity":
        if row["notified_at"] is not None:
            lines.append(f"Notified: {_utc(row['notified_at']).isoformat()}")
        if row["lead_days"] is not None:
            required = row["required_lead_days"]
            met = {True: "met", False: "NOT met", None: "no lead time applies"}[
                row["lead_time_met"]
            ]
            need = f" ({required} required): {met}" if required is not None else ""
            lines.append(f"Lead time: {row['lead_days']:g} days{need}")
    else:
        end = _utc(row["ends_at"]).date() - timedelta(days=1)
        lines.append(
            f"Due: {_utc(row['starts_at']).date().isoformat()} (grace until {end.isoformat()})"
        )
    verdict = row["verdict"] or "none yet"
    lines.append(f"Verdict: {verdict} ({row['status']})")
    lines.append(f"Release: {row['release_id']}")
    return "\n".join(lines)


def calendar_ics(table: pa.Table, as_of: datetime, release_id: str) -> bytes:
    """The iCalendar file of a release's calendar rows (``published_calendar.sql``)."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", "CBM security calendar")
    cal.add("x-wr-caldesc", f"Notified activities and milestones, release {release_id}")
    rows = sorted(table.to_pylist(), key=lambda r: (r["starts_at"], r["entry_id"]))
    for row in rows:
        event = icalendar.Event()
        event.add("uid", f"{row['entry_id']}@{UID_DOMAIN}")
        event.add("dtstamp", _utc(as_of))
        if row["all_day"]:
            event.add("dtstart", _utc(row["starts_at"]).date())
            event.add("dtend", _utc(row["ends_at"]).date())
            what = f"milestone {row['commitment_id']}"
        else:
            event.add("dtstart", _utc(row["starts_at"]))
            if row["ends_at"] > row["starts_at"]:
                event.add("dtend", _utc(row["ends_at"]))
            what = f"notified activity ({row['commitment_id']})"
        event.add("summary", f"{row['subject']}: {what}")
        event.add("description", _description(row))
        event.add("categories", [row["entry_type"], row["status"]])
        event.add("status", "CONFIRMED")
        event.add("transp", "TRANSPARENT")
        cal.add_component(event)
    return cal.to_ical()
