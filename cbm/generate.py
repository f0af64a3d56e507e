"""Synthetic inbox + registries following the data contract (``cbm generate``).

Deterministic for a seed: the same seed and size give byte-identical files. A small share
of rows and files are deliberately bad, of several kinds, so every run exercises quarantine.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import yaml

from cbm.contract import INCIDENT_CATEGORIES

STATES = [  # code, name, bloc, public label
    ("ALPHA", "Republic of Alphaland", "north", "Alphaland"),
    ("BRAVO", "Kingdom of Bravonia", "north", "Bravonia"),
    ("CHARLIE", "Charlie Federation", "north", "Charlie Federation"),
    ("DELTA", "Deltan Union", "south", "Deltan Union"),
    ("ECHO", "Echo Islands", "south", "Echo Islands"),
    ("FOXTROT", "Foxtrot Commonwealth", "south", "Foxtrot"),
    ("GOLF", "Neutral State of Golfia", None, "Golfia"),
]
OTHERS = [  # code, name, class
    ("ACADEMY", "Institute for Strategic Observation", "observer_academic"),
    ("AUDITOR", "Sentinel Network Audit Ltd", "industry_auditor"),
    ("INTLORG", "Organisation for Regional Security", "international_body"),
    ("CIVNET", "Civil Watch Network", "civil_society"),
    ("SECRETARIAT", "CBM Secretariat", "secretariat"),
]
REGIONS = ["EST", "LVA", "LTU", "POL", "FIN", "NOR", "SWE", "DEU", "UKR", "GEO"]
SECTORS = ["energy", "water", "health", "finance", "telecom", "transport", "government", "defence"]
POLICY = {
    "policy_version": 1,
    "association_window_hours": {
        "cyber_intrusion": 168,
        "unusual_military_activity": 48,
        "airspace_violation": 24,
        "maritime_incident": 48,
        "border_incident": 24,
        "espionage_exposure": 720,
        "other": 48,
    },
    "association_radius_km": 50,
    "review_window_days": 14,
    "expiry_days": 90,
    "small_cell_k": 5,
    "escalation_thresholds": [5, 15, 30, 60, 100],
    "tentative_max_escalation": 2,
    # the member parties receive TLP:AMBER reports: verification reads them, the bundle has them
    "amber_recipients": "members",
}
COMMITMENTS = [
    {
        "commitment_id": "VD11-V-NOTIFY",
        "instrument": "Vienna Document 2011, ch. V",
        "type": "advance_notification",
        "obligated": "all_states",
        "schedule": "on_event",
        "lead_time_days": 42,
        "response_sla_hours": None,
        "grace_days": 0,
        "valid_from": "2011-12-01",
        "valid_to": None,
    },
    {
        "commitment_id": "HOTLINE-TEST",
        "instrument": "Regional hotline arrangement, art. 3",
        "type": "hotline_test",
        "obligated": "all_states",
        "schedule": "monthly",
        "lead_time_days": None,
        "response_sla_hours": 48,
        "grace_days": 5,
        "valid_from": "2020-01-01",
        "valid_to": None,
    },
    {
        "commitment_id": "CYBER-DATA-EXCHANGE",
        "instrument": "Cyber CBM 2016, measure 5",
        "type": "data_exchange",
        "obligated": "all_states",
        "schedule": "quarterly",
        "lead_time_days": None,
        "response_sla_hours": None,
        "grace_days": 14,
        "valid_from": "2016-03-10",
        "valid_to": None,
    },
    {  # one-off steps on agreed dates: the last one is still ahead of the sample's "now"
        "commitment_id": "RESTITUTION-STEPS",
        "instrument": "Joint statement on restitution (2025), steps 1-3",
        "type": "data_exchange",
        "obligated": ["BRAVO", "DELTA"],
        "schedule": "milestone:2026-03-31,2026-08-31,2027-01-15",
        "lead_time_days": None,
        "response_sla_hours": None,
        "grace_days": 7,
        "valid_from": "2025-06-01",
        "valid_to": None,
    },
]
# 12 months ending before the default "now" of the sample.
START = datetime(2025, 11, 1, tzinfo=UTC)
MONTHS = [(2025, 11), (2025, 12)] + [(2026, m) for m in range(1, 11)]
OFFSETS = [timezone(timedelta(hours=h)) for h in (0, 1, 2, 3, -5, 5)]


@dataclass
class GeneratedInbox:
    inbox: Path
    registry: Path
    files: int
    reports: int


def _ts(dt: datetime, rng: random.Random) -> str:
    return dt.astimezone(rng.choice(OFFSETS)).isoformat(timespec="seconds")


def _write(path: Path, rows: list[dict], fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))  # first-seen order, never set order
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
        path.write_text(buf.getvalue(), encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text(
            "".join(json.dumps(r, sort_keys=False) + "\n" for r in rows), encoding="utf-8"
        )
    else:  # parquet: every column as text, as a party exporting from a spreadsheet would
        frame = pl.DataFrame(
            {k: [None if r.get(k) is None else str(r.get(k)) for r in rows] for k in columns},
            schema={k: pl.String for k in columns},
        )
        frame.write_parquet(path, compression="zstd", statistics=False)


class _Gen:
    def __init__(self, seed: int, reports: int):
        self.rng = random.Random(seed)
        self.reports = reports
        self.states = [s[0] for s in STATES]
        self.sources = self.states + ["ACADEMY", "AUDITOR", "INTLORG", "CIVNET"]
        self.files: dict[tuple[str, str], list[dict]] = {}
        self.counter = 0

    def rid(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter:06d}"

    def add(self, party: str, kind: str, row: dict) -> None:
        self.files.setdefault((party, kind), []).append(row)

    def incidents(self, n: int) -> list[tuple[str, dict]]:
        rng = self.rng
        made: list[tuple[str, dict]] = []
        while len(made) < n:
            cat = rng.choice(INCIDENT_CATEGORIES)
            origin = START + timedelta(minutes=rng.randrange(0, 365 * 24 * 60 - 60 * 24 * 20))
            region = rng.choice(REGIONS)
            alleged = rng.choice(self.states + ["unknown"])
            n_src = rng.choices([1, 2, 3, 4, 5], weights=[35, 25, 20, 12, 8])[0]
            candidates = [s for s in self.sources if s != alleged]
            reporters = rng.sample(candidates, n_src)
            severity = rng.choices([1, 2, 3, 4, 5], weights=[30, 30, 20, 12, 8])[0]
            tkey = f"198.51.100.{rng.randrange(1, 250)}" if cat == "cyber_intrusion" else None
            window = POLICY["association_window_hours"][cat]
            for party in reporters:
                occurred = origin + timedelta(minutes=rng.randrange(0, max(1, window * 60 // 3)))
                reported = occurred + timedelta(hours=rng.randrange(1, 96))
                lat = round(54 + rng.random() * 6, 4) if rng.random() < 0.5 else None
                row = {
                    "report_id": self.rid("INC"),
                    "version": 1,
                    "tlp": rng.choices(["CLEAR", "GREEN", "AMBER", "RED"], weights=[30, 60, 8, 2])[
                        0
                    ],
                    "confidence": rng.randrange(40, 100),
                    "summary": rng.choice(
                        [
                            "Observed activity near the border crossing.",
                            "Contact duty officer at ops@example.org for the log.",
                            "Scanning from 203.0.113.7 against grid operator.",
                            "Call +44 20 7946 0958 for the liaison report.",
                            None,
                        ]
                    ),
                    "category": cat,
                    "occurred_at": _ts(occurred, rng),
                    "reported_at": _ts(reported, rng),
                    "time_precision": rng.choice(["minute", "hour", "day"]),
                    "region": region,
                    "lat": lat,
                    "lon": round(20 + rng.random() * 10, 4) if lat is not None else None,
                    "sector": rng.choice(SECTORS) if cat == "cyber_intrusion" else None,
                    "severity": max(1, min(5, severity + rng.choice([-1, 0, 0, 0, 1]))),
                    "determination": rng.choices(["suspected", "confirmed"], weights=[60, 40])[0],
                    "alleged_party": alleged,
                    "technical_keys": f"{tkey};sha256:{rng.getrandbits(64):016x}" if tkey else None,
                }
                made.append((party, row))
        return made[:n]

    def compliance(self) -> list[tuple[str, dict]]:
        rng = self.rng
        made = []
        for state in self.states:
            for year, month in MONTHS:
                period = f"{year}-{month:02d}"
                # hotline test: one a month; a few missing (-> missed), a few slow (-> late)
                if rng.random() < 0.92:
                    req = datetime(year, month, rng.randrange(2, 20), 9, tzinfo=UTC)
                    latency = rng.choice([2, 5, 20, 30, 47, 52]) if rng.random() < 0.9 else 80
                    made.append(
                        (
                            state,
                            self._claim(state, "HOTLINE-TEST", period, "honoured")
                            | {
                                "requested_at": _ts(req, rng),
                                "responded_at": _ts(req + timedelta(hours=latency), rng),
                            },
                        )
                    )
                # exercises: some months have one, notified ahead (sometimes too late)
                if rng.random() < 0.35:
                    start = datetime(year, month, rng.randrange(1, 28), 6, tzinfo=UTC)
                    lead = rng.choice([60, 50, 45, 42, 30])
                    claim = (
                        "honoured" if lead >= 42 else rng.choice(["honoured", "partially_honoured"])
                    )
                    made.append(
                        (
                            state,
                            self._claim(state, "VD11-V-NOTIFY", period, claim)
                            | {
                                "notified_at": _ts(start - timedelta(days=lead), rng),
                                "activity_start": _ts(start, rng),
                                # no draw from rng: the rest of the sample stays as it was
                                "activity_end": (start + timedelta(days=2 + lead % 3)).isoformat(),
                            },
                        )
                    )
                if month in (3, 6, 9, 12) and rng.random() < 0.85:
                    made.append(
                        (
                            state,
                            self._claim(
                                state,
                                "CYBER-DATA-EXCHANGE",
                                period,
                                rng.choice(["honoured", "nil_report"]),
                            ),
                        )
                    )
        return made

    def _claim(self, state: str, cid: str, period: str, claim: str) -> dict:
        return {
            "report_id": self.rid("CMP"),
            "version": 1,
            "tlp": self.rng.choices(["CLEAR", "GREEN", "AMBER"], weights=[50, 45, 5])[0],
            "confidence": self.rng.randrange(70, 101),
            "summary": None,
            "commitment_id": cid,
            "subject_party": state,
            "period": period,
            "claim": claim,
        }

    def attestations(self, incidents, compliance) -> list[tuple[str, dict]]:
        rng = self.rng
        made = []
        observers = ["ACADEMY", "INTLORG", "AUDITOR", "CIVNET"]
        for kind, pool, share in (("compliance", compliance, 0.4), ("incidents", incidents, 0.1)):
            for party, row in pool:
                if rng.random() >= share:
                    continue
                attester = rng.choice([o for o in observers + self.states if o != party])
                observed = datetime.fromisoformat(
                    row.get("reported_at")
                    or row.get("responded_at")
                    or row.get("activity_start")
                    or f"{row['period']}-15T12:00:00+00:00"
                )
                made.append(
                    (
                        attester,
                        {
                            "report_id": self.rid("ATT"),
                            "version": 1,
                            "tlp": "GREEN",
                            "confidence": rng.randrange(50, 100),
                            "summary": None,
                            "subject_party": party,
                            "subject_kind": kind,
                            "subject_report_id": row["report_id"],
                            "stance": rng.choices(
                                ["corroborates", "contradicts", "cannot_assess"],
                                weights=[80, 8, 12],
                            )[0],
                            "method": rng.choice(
                                [
                                    "direct_observation",
                                    "technical_sensor",
                                    "document_review",
                                    "counterpart_receipt",
                                ]
                            ),
                            "observed_at": _ts(
                                observed + timedelta(hours=rng.randrange(1, 72)), rng
                            ),
                        },
                    )
                )
        return made

    def milestone_claims(self) -> list[tuple[str, dict]]:
        """Claims on RESTITUTION-STEPS: both parties report step 1, only DELTA step 2 (BRAVO's
        is missed); step 3 is ahead. Fixed, with no draw from the shared random stream."""
        made = []
        for party, period in (("BRAVO", "2026-03"), ("DELTA", "2026-03"), ("DELTA", "2026-08")):
            made.append(
                (
                    party,
                    {
                        "report_id": self.rid("CMP"),
                        "version": 1,
                        "tlp": "GREEN",
                        "confidence": 90,
                        "summary": None,
                        "commitment_id": "RESTITUTION-STEPS",
                        "subject_party": party,
                        "period": period,
                        "claim": "honoured",
                    },
                )
            )
        return made

    def dispute_outcomes(self, attestations, seed: int) -> list[tuple[str, dict]]:
        """Later attestations that end some disputes: the secretariat rules on about a third of
        the contradicted reports (upheld or rejected), and about a fifth of the contradicting
        parties withdraw (a new attestation, cannot_assess). Their own random stream."""
        rng = random.Random(seed * 1000 + 21)
        made = []
        for party, row in attestations:
            if row["stance"] != "contradicts":
                continue
            later = datetime.fromisoformat(row["observed_at"]) + timedelta(
                days=rng.randrange(3, 20)
            )
            draw = rng.random()
            if draw < 0.33:
                attester, stance, method = (
                    "SECRETARIAT",
                    rng.choice(["contradicts", "corroborates"]),
                    "document_review",
                )
            elif draw < 0.53:
                attester, stance, method = party, "cannot_assess", row["method"]
            else:
                continue
            made.append(
                (
                    attester,
                    row
                    | {
                        "report_id": self.rid("ATT"),
                        "stance": stance,
                        "method": method,
                        "observed_at": later.isoformat(),
                    },
                )
            )
        return made

    def spoil(self, party_rows: list[tuple[str, dict]], kind: str) -> None:
        """Break about 2 % of rows, each in one of several specific ways."""
        rng = self.rng
        spoilers = {
            "incidents": [
                lambda r: r.update(severity=9),
                lambda r: r.update(occurred_at=r["occurred_at"][:19]),  # no offset
                lambda r: r.update(reported_at="2025-01-01T00:00:00+00:00"),  # before occurred
                lambda r: r.update(category="alien_landing"),
                lambda r: r.update(lat=91.5, lon=10.0),
                lambda r: r.update(lat=55.0, lon=None),
                lambda r: r.update(report_id="../etc/passwd"),
                lambda r: r.update(severity="high"),
            ],
            "compliance": [
                lambda r: r.update(commitment_id="NO-SUCH-COMMITMENT"),
                lambda r: r.update(period="2026-13"),
                lambda r: r.update(claim="maybe"),
                lambda r: r.update(subject_party="ZULU"),
            ],
            "attestations": [
                lambda r: r.update(stance="shrug"),
                lambda r: r.update(subject_kind="gossip"),
                lambda r: r.update(confidence=150),
            ],
        }[kind]
        for _, row in party_rows:
            if rng.random() < 0.02:
                rng.choice(spoilers)(row)


def sample_parties() -> list[dict]:
    """The sample registry's parties (7 states in two blocs plus one non-aligned, 5 others)."""
    return [
        {
            "code": c,
            "name": n,
            "class": "state",
            "bloc": b,
            "public_label": label,
            "public_key": None,
        }
        for c, n, b, label in STATES
    ] + [
        {"code": c, "name": n, "class": k, "bloc": None, "public_label": None, "public_key": None}
        for c, n, k in OTHERS
    ]


def generate(
    out: str | Path,
    seed: int = 7,
    reports: int = 2000,
    parties: int | None = None,
    halves: bool = True,
) -> GeneratedInbox:
    """Write ``out/inbox`` and ``out/registry``. ``reports`` counts incident reports;
    ``parties`` (optional) adds independent observers until that many parties report;
    ``halves`` hands in each party's reports of a kind as two files (False: one file, about
    half as many submissions, for tests that need a whole inbox but not its file count)."""
    out = Path(out)
    inbox, registry = out / "inbox", out / "registry"
    registry.mkdir(parents=True, exist_ok=True)
    inbox.mkdir(parents=True, exist_ok=True)
    registered = sample_parties()
    reporting = len(STATES) + 4  # the secretariat reports only its rulings on disputes
    extra = [f"OBS{i:02d}" for i in range(1, max(0, (parties or 0) - reporting) + 1)]
    registered += [
        {
            "code": c,
            "name": f"Independent Observer {c[3:]}",
            "class": "observer_academic",
            "bloc": None,
            "public_label": None,
            "public_key": None,
        }
        for c in extra
    ]
    (registry / "parties.yaml").write_text(
        yaml.safe_dump(registered, sort_keys=False), encoding="utf-8"
    )
    (registry / "commitments.yaml").write_text(
        yaml.safe_dump(COMMITMENTS, sort_keys=False), encoding="utf-8"
    )
    (registry / "policy.yaml").write_text(yaml.safe_dump(POLICY, sort_keys=False), encoding="utf-8")
    g = _Gen(seed, reports)
    g.sources += extra
    incidents = g.incidents(reports)
    compliance = g.compliance()
    attestations = g.attestations(incidents, compliance)
    attestations += g.dispute_outcomes(attestations, seed)
    compliance += g.milestone_claims()
    # A few reports are revised: version 2 supersedes version 1 in a later file.
    revisions = []
    for party, row in g.rng.sample(incidents, max(1, len(incidents) // 100)):
        revisions.append(
            (party, row | {"version": 2, "severity": min(5, int(row["severity"]) + 1)})
        )
    for kind, rows in (
        ("incidents", incidents),
        ("compliance", compliance),
        ("attestations", attestations),
    ):
        g.spoil(rows, kind)
    formats = ["csv", "jsonl", "parquet"]
    n_files = 0
    for kind, rows in (
        ("incidents", incidents),
        ("compliance", compliance),
        ("attestations", attestations),
    ):
        by_party: dict[str, list[dict]] = {}
        for party, row in rows:
            by_party.setdefault(party, []).append(row)
        for i, (party, prows) in enumerate(sorted(by_party.items())):
            half = (len(prows) // 2 or len(prows)) if halves else len(prows)
            for j, chunk in enumerate((prows[:half], prows[half:])):
                if not chunk:
                    continue
                fmt = formats[(i + j) % 3]
                _write(inbox / party / f"{kind}_h{j + 1}.{fmt}", chunk, fmt)
                n_files += 1
    by_party = {}
    for party, row in revisions:
        by_party.setdefault(party, []).append(row)
    for party, prows in sorted(by_party.items()):
        _write(inbox / party / "incidents_revisions.csv", prows, "csv")
        n_files += 1
    # Submission-level failures, each of a different kind; all are kept and quarantined.
    (inbox / "ZULU").mkdir(exist_ok=True)
    _write(
        inbox / "ZULU" / "incidents_unregistered.csv",
        incidents[:3] and [r for _, r in incidents[:3]],
        "csv",
    )
    (inbox / "ALPHA" / "incidents_broken.parquet").write_bytes(b"PAR1 this is not really parquet")
    (inbox / "BRAVO" / "compliance_empty.csv").write_bytes(b"")
    (inbox / "CHARLIE" / "gossip_notes.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (inbox / "DELTA" / "incidents_latin1.csv").write_bytes(
        "report_id,summary\nX-1,Caf\xe9 incident\n".encode("latin-1")
    )
    n_files += 5
    return GeneratedInbox(
        inbox=inbox,
        registry=registry,
        files=n_files,
        reports=len(incidents) + len(compliance) + len(attestations) + len(revisions),
    )
