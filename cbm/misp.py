"""A release's events as a MISP feed (contract §7): ``misp/manifest.json``, ``misp/hashes.csv``
and one ``misp/<uuid>.json`` per event, the layout MISP's feed generator writes and a MISP
instance subscribes to ("Add feed", source format MISP Feed).

Deterministic: uuids are UUIDv5 of the event id (an event keeps its uuid from release to
release), timestamps are the release's as-of time, keys are sorted. Only what the events
product publishes goes out: each column as a text attribute, and the event's date (its ISO
week's Monday) as a typed ``datetime`` attribute besides the event's own ``date``.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from cbm import jsontext
from cbm.stix import EVENT_COLUMNS, NAMESPACE, week_monday

FIELDS = EVENT_COLUMNS  # one text attribute each (the comment names the column)
THREAT_LEVEL = {"high": "1", "medium": "2", "low": "3"}  # MISP: 1 high .. 4 undefined
ANALYSIS = {"definitive": "2", "expired": "2", "tentative": "1", "disputed": "1", "reported": "0"}


def _uuid(key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"misp:{key}"))


def _dump(doc) -> bytes:
    return (jsontext.dumps(doc, ensure_ascii=False) + "\n").encode()


def feed_files(events: list[dict], as_of: datetime, publisher_label: str) -> dict[str, bytes]:
    """The feed's files, by path inside ``misp/``."""
    stamp = str(int(as_of.timestamp()))
    org = {"name": publisher_label, "uuid": _uuid("org:publisher")}
    manifest, hashes, files = {}, [], {}
    for e in sorted(events, key=lambda r: r["event_id"]):
        event_uuid = _uuid(f"event:{e['event_id']}")
        tags = [
            {"name": "tlp:green", "colour": "#33FF00", "exportable": True},
            {"name": f'cbm-verify:status="{e["status"]}"', "colour": "#0071c3", "exportable": True},
        ]
        attributes = [
            {
                "uuid": _uuid(f"attribute:{e['event_id']}:{field}"),
                "type": "text",
                "category": "Other",
                "value": str(e[field]),
                "comment": field,
                "timestamp": stamp,
                "to_ids": False,
                "distribution": "5",
                "disable_correlation": field not in ("event_id", "alleged", "region"),
            }
            for field in FIELDS
        ]
        day = week_monday(e["week"])  # MISP wants a date: the ISO week's Monday
        start = day.isoformat() if day else f"{e['period']}-01"
        # the same date as a typed attribute: MISP filters and correlates it as a date, and
        # misp-stix keeps it (typed) when it exports the event to STIX 2.1, whose report
        # has no field for the event's date (docs/interoperability.md)
        attributes.append(
            {
                "uuid": _uuid(f"attribute:{e['event_id']}:week_start"),
                "type": "datetime",
                "category": "Other",
                "value": f"{start}T00:00:00+00:00",
                "comment": "week_start",
                "timestamp": stamp,
                "to_ids": False,
                "distribution": "5",
                "disable_correlation": True,
            }
        )
        info = f"cbm-verify event {e['event_id']}: {e['category']} in {e['region']}, {e['week']} ({e['status']})"
        head = {
            "uuid": event_uuid,
            "info": info,
            "date": start,
            "timestamp": stamp,
            "publish_timestamp": stamp,
            "published": True,
            "analysis": ANALYSIS.get(e["status"], "0"),
            "threat_level_id": THREAT_LEVEL.get(e["severity_band"], "4"),
            "distribution": "3",
            "Orgc": org,
            "Tag": tags,
        }
        files[f"{event_uuid}.json"] = _dump({"Event": head | {"Attribute": attributes}})
        manifest[event_uuid] = {
            k: head[k]
            for k in ("info", "date", "timestamp", "analysis", "threat_level_id", "Orgc", "Tag")
        } | {"publish_timestamp": stamp}
        hashes += [(hashlib.md5(a["value"].encode()).hexdigest(), event_uuid) for a in attributes]
    files["manifest.json"] = _dump(manifest)
    files["hashes.csv"] = "".join(f"{h},{u}\n" for h, u in sorted(hashes)).encode()
    return files
