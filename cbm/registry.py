"""Registries (contract §2): parties.yaml, commitments.yaml, policy.yaml.

Loading validates every entry and raises :class:`RegistryError` naming the file, the entry
and the rule, because a run on a wrong registry must not start at all.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from cbm.contract import INCIDENT_CATEGORIES

# matched whole (fullmatch): with match and "$", "HOTEL\n" passed
PARTY_CODE_RE = re.compile(r"[A-Z][A-Z0-9_]{1,31}")
PARTY_CLASSES = (
    "state",
    "observer_academic",
    "industry_auditor",
    "international_body",
    "civil_society",
    "secretariat",
)
COMMITMENT_TYPES = (
    "advance_notification",
    "hotline_test",
    "data_exchange",
    "inspection_hosting",
    "consultation_response",
    "incident_notification",
)
SCHEDULE_RE = re.compile(
    r"^(monthly|quarterly|on_event|annual:(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"|milestone:\d{4}-\d{2}-\d{2}(,\d{4}-\d{2}-\d{2})*)$"
)
MILESTONE = "milestone:"

# Bump when a verification or indicator rule in code changes: it is part of method_version.
# 2026.12.1: verification reads nothing above what members may see (verification_scope:
# AMBER only with amber_recipients: members; AMBER+STRICT never)
RULES_VERSION = "rules-2026.12.1"


class RegistryError(ValueError):
    """A registry file is missing or breaks the contract; the message names file, entry, rule."""


@dataclass(frozen=True)
class Party:
    code: str
    name: str
    party_class: str
    bloc: str | None
    public_label: str | None
    public_key: str | None


@dataclass(frozen=True)
class Commitment:
    commitment_id: str
    instrument: str
    type: str
    obligated: tuple[str, ...] | str
    schedule: str
    lead_time_days: int | None
    response_sla_hours: int | None
    grace_days: int
    valid_from: date
    valid_to: date | None

    @property
    def milestones(self) -> tuple[date, ...]:
        """The due dates of a ``milestone:`` schedule (one-off steps), in order; () otherwise."""
        return tuple(sorted(date.fromisoformat(d) for d in _milestone_dates(self.schedule)))

    def obligated_parties(self, parties: dict[str, Party]) -> list[str]:
        if self.obligated == "all_states":
            return sorted(c for c, p in parties.items() if p.party_class == "state")
        return sorted(self.obligated)


@dataclass(frozen=True)
class Limits:
    """Per-submission limits (policy.yaml ``limits:``): a file over one is rejected whole,
    with a reason naming the limit, and kept. Checked before a file is decoded in full where
    the format allows (Parquet metadata; lines of CSV and JSON Lines)."""

    max_rows: int = 5_000_000
    max_decoded_bytes: int = 1_000_000_000
    max_field_chars: int = 100_000
    max_columns: int = 1_000  # columns of one file (the contract has at most 17 per kind)
    reader_seconds: float = 600.0  # wall-clock time to parse one file
    reader_memory_bytes: int = 6_000_000_000  # the reader process's address space
    # new files one party lands in one run; the rest wait for the next runs (a party that
    # drops 10,000 files at once cannot make one run of them, or stall everyone else's)
    max_files_per_run: int = 1_000
    max_bytes_per_run: int = 2_000_000_000  # bytes of those new files (the first always goes)
    # seconds of parsing one party's files may take in one run: once spent, its files not yet
    # started wait, landed, for the next run (a file that started finishes within
    # reader_seconds, so one party takes at most this plus reader_seconds)
    reader_seconds_per_run: float = 1_800.0


@dataclass(frozen=True)
class ReleaseGuard:
    """policy.yaml ``release_guard:`` (a publication rule, not part of the method): a release
    that removes or revises more than ``max_changed_share`` of a product's rows in the
    previous release is held, unsigned and not LATEST, until accepted on purpose. Products
    with fewer than ``min_rows`` rows in the previous release are not held."""

    max_changed_share: float = 0.2
    min_rows: int = 20


@dataclass(frozen=True)
class Webhook:
    url: str
    hmac_key_file: Path | None = None  # relative paths are read from the registry folder


@dataclass(frozen=True)
class Email:
    host: str
    port: int
    sender: str
    to: tuple[str, ...]


@dataclass(frozen=True)
class AlertsConfig:
    """policy.yaml ``alerts:``: who is told, at once, when a dyad's escalation level rises.
    Operational, not part of the method: it is left out of ``method_version``."""

    webhook: Webhook | None = None
    email: Email | None = None
    attempts: int = 3  # per notifier and alert, within one run; a failed one is tried next run
    timeout_seconds: float = 10.0  # for one try as a whole (connect, send, the whole answer)
    budget_seconds: float = 60.0  # for all deliveries of one update; the rest: next update
    digest_after: int = 3  # more alerts than this about one party in one update: one digest

    @property
    def notifiers(self) -> tuple[str, ...]:
        return tuple(n for n in ("webhook", "email") if getattr(self, n) is not None)


@dataclass(frozen=True)
class Policy:
    policy_version: int
    association_window_hours: dict[str, int]
    association_radius_km: float
    review_window_days: int
    expiry_days: int
    small_cell_k: int
    escalation_thresholds: tuple[int, ...]
    tentative_max_escalation: int
    limits: Limits = field(default_factory=Limits)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    release_guard: ReleaseGuard = field(default_factory=ReleaseGuard)
    extra_regions: tuple[str, ...] = ()  # region codes beyond ISO 3166-1 alpha-3
    # who receives TLP:AMBER reports beyond the secretariat: "members" (the member parties,
    # who hold the bundle) makes them part of verification; None leaves them out of it
    amber_recipients: str | None = None
    # the agreed method: alerts and the release guard (who is told, what is held) left out
    raw: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Registry:
    parties: dict[str, Party]
    commitments: dict[str, Commitment]
    policy: Policy

    @property
    def code_by_label(self) -> dict[str, str]:
        """Public label -> party code: an incident's alleged_party may name the party as a
        release names it (a release's events handed in again as STIX)."""
        return {
            p.public_label: p.code
            for p in self.parties.values()
            if p.public_label and p.public_label not in self.parties
        }

    @property
    def method_version(self) -> str:
        """Hash of the code rules version and the agreed policy: names the method of a release."""
        blob = json.dumps({"rules": RULES_VERSION, "policy": self.policy.raw}, sort_keys=True)
        return "m-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load_yaml(path: Path):
    if not path.is_file():
        raise RegistryError(f"{path}: registry file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RegistryError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        ) from exc
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from exc


def _yaml_problem(exc: Exception) -> str:
    """A YAML error in one line: where and what (PyYAML's own text spans several lines and
    quotes the file)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(exc).split()) or exc.__class__.__name__


def _req(entry: dict, key: str, where: str):
    if key not in entry or entry[key] is None:
        raise RegistryError(f"{where}: field '{key}' is required")
    return entry[key]


def _number(value, where: str, key: str, kind=int, minimum: float | None = None):
    """A whole number (or, with ``kind=float``, any number) from YAML, or a RegistryError that
    names the file, the field and the value. YAML booleans are not numbers."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and kind is int and isinstance(value, float):
        ok = value.is_integer()
    if not ok:
        what = "a whole number" if kind is int else "a number"
        raise RegistryError(f"{where}: '{key}' must be {what}, got {value!r}")
    if minimum is not None and value < minimum:
        raise RegistryError(f"{where}: '{key}' must be >= {minimum:g}, got {value!r}")
    return kind(value)


def _as_date(value, where: str, key: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise RegistryError(f"{where}: '{key}' must be a date YYYY-MM-DD, got {value!r}") from exc


def load_parties(path: Path) -> dict[str, Party]:
    data = _load_yaml(path)
    if not isinstance(data, list) or not data:
        raise RegistryError(f"{path}: expected a non-empty list of parties")
    parties: dict[str, Party] = {}
    for i, entry in enumerate(data, 1):
        where = f"{path} entry {i}"
        if not isinstance(entry, dict):
            raise RegistryError(f"{where}: expected a mapping")
        code = str(_req(entry, "code", where))
        where = f"{path} party {code}"
        if not PARTY_CODE_RE.fullmatch(code):
            raise RegistryError(f"{where}: code must match [A-Z][A-Z0-9_]{{1,31}}")
        if code in parties:
            raise RegistryError(f"{where}: duplicate code")
        pclass = _req(entry, "class", where)
        if pclass not in PARTY_CLASSES:
            raise RegistryError(
                f"{where}: class {pclass!r} is not one of {', '.join(PARTY_CLASSES)}"
            )
        parties[code] = Party(
            code=code,
            name=str(_req(entry, "name", where)),
            party_class=pclass,
            bloc=entry.get("bloc"),
            public_label=entry.get("public_label"),
            public_key=entry.get("public_key"),
        )
    return parties


def publisher(parties: dict[str, Party]) -> Party | None:
    """The publisher of releases: the one party of class ``secretariat`` (None when there is
    none, or more than one)."""
    found = [p for p in parties.values() if p.party_class == "secretariat"]
    return found[0] if len(found) == 1 else None


def signing_key_problem(parties: dict[str, Party], public_key: str, holder: str) -> str | None:
    """Why a signing key (its base64 public key, held by ``holder``) cannot sign releases for
    this registry, or None when it is the registered publisher's."""
    who = publisher(parties)
    if who is None:
        return "parties.yaml names no single party of class secretariat to sign as"
    if public_key != who.public_key:
        return (
            f"it is {holder}'s key, not the one parties.yaml registers for the publisher "
            f"{who.code} (set its public_key: {public_key})"
        )
    return None


def load_commitments(path: Path, parties: dict[str, Party]) -> dict[str, Commitment]:
    data = _load_yaml(path)
    if not isinstance(data, list):
        raise RegistryError(f"{path}: expected a list of commitments")
    out: dict[str, Commitment] = {}
    for i, entry in enumerate(data, 1):
        where = f"{path} entry {i}"
        if not isinstance(entry, dict):
            raise RegistryError(f"{where}: expected a mapping")
        cid = str(_req(entry, "commitment_id", where))
        where = f"{path} commitment {cid}"
        ctype = _req(entry, "type", where)
        if ctype not in COMMITMENT_TYPES:
            raise RegistryError(
                f"{where}: type {ctype!r} is not one of {', '.join(COMMITMENT_TYPES)}"
            )
        schedule = str(_req(entry, "schedule", where)).replace(" ", "")
        if not SCHEDULE_RE.match(schedule):
            raise RegistryError(
                f"{where}: schedule {schedule!r} must be monthly, quarterly, annual:MM-DD, "
                "on_event or milestone:YYYY-MM-DD[,YYYY-MM-DD...]"
            )
        _check_milestones(schedule, where)
        obligated = _req(entry, "obligated", where)
        if obligated != "all_states":
            if not isinstance(obligated, list) or not obligated:
                raise RegistryError(
                    f"{where}: obligated must be a list of party codes or all_states"
                )
            unknown = [c for c in obligated if not isinstance(c, str) or c not in parties]
            if unknown:
                raise RegistryError(f"{where}: obligated names unregistered parties {unknown}")
            obligated = tuple(obligated)
        valid_from = _as_date(_req(entry, "valid_from", where), where, "valid_from")
        out[cid] = Commitment(
            commitment_id=cid,
            instrument=str(_req(entry, "instrument", where)),
            type=ctype,
            obligated=obligated,
            schedule=schedule,
            lead_time_days=_optional_number(entry, "lead_time_days", where),
            response_sla_hours=_optional_number(entry, "response_sla_hours", where),
            grace_days=_number(entry.get("grace_days") or 0, where, "grace_days", minimum=0),
            valid_from=valid_from,
            valid_to=_as_date(entry.get("valid_to"), where, "valid_to"),
        )
    return out


def _milestone_dates(schedule: str) -> list[str]:
    """The dates of a ``milestone:`` schedule as written; [] for any other schedule."""
    return schedule[len(MILESTONE) :].split(",") if schedule.startswith(MILESTONE) else []


def _check_milestones(schedule: str, where: str) -> None:
    dates = _milestone_dates(schedule)
    for text in dates:
        try:
            date.fromisoformat(text)
        except ValueError:
            raise RegistryError(
                f"{where}: milestone date {text!r} is not a date YYYY-MM-DD"
            ) from None
    months = [d[:7] for d in dates]
    if len(set(months)) != len(months):  # one occurrence per month: a verdict is per month
        raise RegistryError(f"{where}: two milestone dates fall in one month: {schedule!r}")


def _optional_number(entry: dict, key: str, where: str) -> int | None:
    value = entry.get(key)
    return None if value is None else _number(value, where, key, minimum=0)


def load_policy(path: Path) -> Policy:
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a mapping")
    where = str(path)
    unknown = sorted(str(k) for k in set(data) - set(POLICY_KEYS))
    if unknown:  # a misspelt key would silently change nothing (or the method): refused
        raise RegistryError(f"{where}: unknown keys {unknown}; known: {', '.join(POLICY_KEYS)}")
    windows = _req(data, "association_window_hours", where)
    if not isinstance(windows, dict):
        raise RegistryError(f"{where}: association_window_hours must map each category to hours")
    missing = [c for c in INCIDENT_CATEGORIES if c not in windows]
    if missing:
        raise RegistryError(f"{where}: association_window_hours lacks categories {missing}")
    raw_thresholds = _req(data, "escalation_thresholds", where)
    if not isinstance(raw_thresholds, list):
        raise RegistryError(
            f"{where}: 'escalation_thresholds' must be a list of 5 ascending numbers, got {raw_thresholds!r}"
        )
    thresholds = tuple(_number(x, where, "escalation_thresholds") for x in raw_thresholds)
    if len(thresholds) != 5 or list(thresholds) != sorted(thresholds):
        raise RegistryError(f"{where}: escalation_thresholds must be 5 ascending numbers")

    def number(key: str, kind=int, minimum: float | None = 0):
        return _number(_req(data, key, where), where, key, kind, minimum)

    return Policy(
        policy_version=number("policy_version", minimum=1),
        association_window_hours={
            c: _number(windows[c], where, f"association_window_hours.{c}", minimum=0)
            for c in INCIDENT_CATEGORIES
        },
        association_radius_km=number("association_radius_km", float),
        review_window_days=number("review_window_days"),
        expiry_days=number("expiry_days"),
        small_cell_k=number("small_cell_k", minimum=1),
        escalation_thresholds=thresholds,
        tentative_max_escalation=number("tentative_max_escalation"),
        limits=_limits(data.get("limits"), where),
        alerts=_alerts(data.get("alerts"), where, path.parent),
        release_guard=_release_guard(data.get("release_guard"), where),
        extra_regions=_extra_regions(data.get("extra_regions"), where),
        amber_recipients=_amber_recipients(data.get("amber_recipients"), where),
        raw=json.loads(
            json.dumps({k: v for k, v in data.items() if k not in NOT_METHOD}, default=str)
        ),
    )


NOT_METHOD = ("alerts", "release_guard")
POLICY_KEYS = (  # every top-level key policy.yaml may hold
    "policy_version",
    "association_window_hours",
    "association_radius_km",
    "review_window_days",
    "expiry_days",
    "small_cell_k",
    "escalation_thresholds",
    "tentative_max_escalation",
    "limits",
    "alerts",
    "release_guard",
    "extra_regions",
    "amber_recipients",
)  # policy.yaml sections that change no published figure


def _amber_recipients(value, where: str) -> str | None:
    if value is None or value == "members":
        return value
    raise RegistryError(
        f"{where}: amber_recipients must be 'members' (the member parties receive TLP:AMBER "
        f"reports, which verification then reads) or absent, got {value!r}"
    )


def verification_max_tlp(policy: Policy) -> str:
    """The highest TLP level verification reads: what the members who hold the bundle may see
    (AMBER when the policy names them its recipients, else GREEN); AMBER+STRICT and RED
    never."""
    return "AMBER" if policy.amber_recipients == "members" else "GREEN"


def _extra_regions(data, where: str) -> tuple[str, ...]:
    if data is None:
        return ()
    if not isinstance(data, list) or not all(
        isinstance(c, str) and re.fullmatch(r"[A-Z]{3}", c) for c in data
    ):
        raise RegistryError(
            f"{where}: 'extra_regions' must be a list of three-letter codes (A-Z), got {data!r}"
        )
    return tuple(sorted(set(data)))


def _release_guard(data, where: str) -> ReleaseGuard:
    if data is None:
        return ReleaseGuard()
    known = set(ReleaseGuard.__dataclass_fields__)
    if not isinstance(data, dict) or set(data) - known:
        raise RegistryError(
            f"{where}: 'release_guard' must be a mapping with {', '.join(sorted(known))}"
        )
    defaults = ReleaseGuard()
    share = _number(
        data.get("max_changed_share", defaults.max_changed_share),
        where,
        "release_guard.max_changed_share",
        float,
        0,
    )
    if share > 1:
        raise RegistryError(
            f"{where}: 'release_guard.max_changed_share' is a share from 0 to 1, got {share!r}"
        )
    return ReleaseGuard(
        max_changed_share=share,
        min_rows=_number(
            data.get("min_rows", defaults.min_rows), where, "release_guard.min_rows", minimum=0
        ),
    )


DEFAULT_ALERTS = AlertsConfig()


def _alerts(data, where: str, folder: Path) -> AlertsConfig:
    if data is None:
        return AlertsConfig()
    where = f"{where} alerts"
    if not isinstance(data, dict):
        raise RegistryError(f"{where}: must be a mapping with webhook and/or email")
    known = tuple(AlertsConfig.__dataclass_fields__)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise RegistryError(f"{where}: unknown keys {unknown}; known: {', '.join(known)}")
    webhook = email = None
    if data.get("webhook") is not None:
        hook = data["webhook"]
        if not isinstance(hook, dict) or not isinstance(hook.get("url"), str):
            raise RegistryError(f"{where}.webhook: needs url: http(s)://...")
        if not re.match(r"^https?://[^\s/]+", hook["url"]):
            raise RegistryError(f"{where}.webhook: url {hook['url']!r} is not an http(s) URL")
        key = hook.get("hmac_key_file")
        webhook = Webhook(hook["url"], None if key is None else folder / str(key))
    if data.get("email") is not None:
        mail = data["email"]
        if not isinstance(mail, dict):
            raise RegistryError(f"{where}.email: must be a mapping with smtp, from and to")
        smtp = str(_req(mail, "smtp", f"{where}.email"))
        host, _, port = smtp.rpartition(":")
        if not host or not port.isdigit():
            raise RegistryError(f"{where}.email: smtp {smtp!r} must be host:port")
        to = _req(mail, "to", f"{where}.email")
        to = [to] if isinstance(to, str) else to
        if (
            not isinstance(to, list)
            or not to
            or not all(isinstance(a, str) and "@" in a for a in to)
        ):
            raise RegistryError(f"{where}.email: to must be one or more e-mail addresses")
        sender = str(_req(mail, "from", f"{where}.email"))
        if "@" not in sender:
            raise RegistryError(f"{where}.email: from {sender!r} is not an e-mail address")
        email = Email(host, int(port), sender, tuple(to))
    return AlertsConfig(
        webhook=webhook,
        email=email,
        **{
            name: _number(data.get(name, getattr(DEFAULT_ALERTS, name)), where, name, kind, least)
            for name, kind, least in (
                ("attempts", int, 1),
                ("timeout_seconds", float, 0.1),
                ("budget_seconds", float, 1),
                ("digest_after", int, 1),
            )
        },
    )


def _limits(data, where: str) -> Limits:
    if data is None:
        return Limits()
    if not isinstance(data, dict):
        raise RegistryError(f"{where}: 'limits' must be a mapping of limit -> number")
    known = set(Limits.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise RegistryError(f"{where}: unknown limits {unknown}; known: {', '.join(sorted(known))}")
    kinds = {"reader_seconds": float, "reader_seconds_per_run": float}
    return Limits(
        **{
            k: _number(
                v, where, f"limits.{k}", kinds.get(k, int), minimum=0.001 if k in kinds else 1
            )
            for k, v in data.items()
        }
    )


def load_registry(directory: str | Path) -> Registry:
    """Load and check parties.yaml, commitments.yaml and policy.yaml from ``directory``."""
    d = Path(directory)
    if not d.is_dir():
        raise RegistryError(f"{d}: registry directory not found")
    parties = load_parties(d / "parties.yaml")
    return Registry(
        parties=parties,
        commitments=load_commitments(d / "commitments.yaml", parties),
        policy=load_policy(d / "policy.yaml"),
    )
