"""Threshold alerts: the message, and its delivery by webhook and e-mail (policy.yaml ``alerts:``).

An alert says that a dyad's escalation level rose (or that a tentative level was confirmed).
Only publishable content goes out: the subject's public label, the affected region, the level,
the public ids of the events behind it (CLEAR/GREEN-derived only), the data's as-of time.
No source, no free text, nothing above TLP:GREEN.

Delivery tries each notifier up to ``attempts`` times with a short back-off and returns one
:class:`Attempt` per try, failed ones included, for the warehouse's ``alert_deliveries``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import smtplib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

from cbm.contract import TLP_LEVELS
from cbm.registry import AlertsConfig

CHECK = "alerts_acknowledged"  # the asset check that warns while an alert waits
SIGNATURE_HEADER = "X-CBM-Signature"  # "sha256=<hex HMAC-SHA-256 of the body>"
SCHEMA = "cbm-verify/alert/1"


@dataclass(frozen=True)
class Alert:
    alert_id: str
    subject: str  # public label (or pseudonym) of the alleged party
    counterpart: str  # affected region (ISO 3166-1 alpha-3)
    level: int
    previous_level: int
    status: str  # definitive | tentative
    reason: str  # rise | confirmed
    evidence: tuple[str, ...]  # public event ids
    tlp_rank: int
    as_of: datetime

    def payload(self, method_version: str, thresholds: tuple[int, ...]) -> dict:
        """The JSON document a webhook receives (and an e-mail carries)."""
        return {
            "schema": SCHEMA,
            "alert_id": self.alert_id,
            "dyad": {"subject": self.subject, "counterpart": self.counterpart},
            "level": self.level,
            "previous_level": self.previous_level,
            "status": self.status,
            "reason": self.reason,
            "evidence_event_ids": list(self.evidence),
            "as_of": self.as_of.astimezone(UTC).isoformat(),
            "thresholds": list(thresholds),
            "method_version": method_version,
            "tlp": TLP_LEVELS[self.tlp_rank],
        }

    def headline(self) -> str:
        change = (
            f"rose from {self.previous_level} to {self.level}"
            if self.reason == "rise"
            else f"level {self.level} confirmed (was tentative)"
        )
        return f"Escalation {self.subject} / {self.counterpart}: {change} ({self.status})"


DIGEST_SCHEMA = "cbm-verify/alert-digest/1"


@dataclass(frozen=True)
class Digest:
    """Many alerts about one alleged party in one update, told in one message (a party that
    floods the inbox cannot make a notifier send one message per alert). The count and every
    alert are in it; each alert is acknowledged on its own as before."""

    alerts: tuple[Alert, ...]

    @property
    def alert_id(self) -> str:
        ids = "\n".join(sorted(a.alert_id for a in self.alerts))
        return "D-" + hashlib.sha256(ids.encode()).hexdigest()[:16]

    @property
    def subject(self) -> str:
        return self.alerts[0].subject

    def headline(self) -> str:
        top = max(a.level for a in self.alerts)
        return (
            f"{len(self.alerts)} escalation alerts for {self.subject} in one update "
            f"(highest level {top})"
        )

    def payload(self, method_version: str, thresholds: tuple[int, ...]) -> dict:
        members = [a.payload(method_version, thresholds) for a in self.alerts]
        return {
            "schema": DIGEST_SCHEMA,
            "alert_id": self.alert_id,
            "subject": self.subject,
            "count": len(members),
            "highest_level": max(a.level for a in self.alerts),
            "alerts": members,
            "thresholds": list(thresholds),
            "method_version": method_version,
            "tlp": TLP_LEVELS[max(a.tlp_rank for a in self.alerts)],
        }


def told_as(alerts: list[Alert], digest_after: int) -> list[Alert | Digest]:
    """What is sent for ``alerts``: one message each, except that the alerts about one
    alleged party beyond ``digest_after`` in one update go together as one ``Digest``."""
    by_subject: dict[str, list[Alert]] = {}
    for alert in alerts:
        by_subject.setdefault(alert.subject, []).append(alert)
    out: list[Alert | Digest] = []
    for alert in alerts:
        group = by_subject[alert.subject]
        if len(group) <= digest_after:
            out.append(alert)
        elif group[0] is alert:
            out.append(Digest(tuple(group)))
    return out


def acknowledgement(unacknowledged: int) -> str:
    """What the check alerts_acknowledged says (the asset and ``cbm alerts --ack`` alike)."""
    if unacknowledged == 0:
        return "every alert acknowledged"
    return f"{unacknowledged} alert(s) not acknowledged: cbm alerts --open lists them"


def body_bytes(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def sign_body(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Attempt:
    alert_id: str
    notifier: str
    attempt: int
    at: datetime
    ok: bool
    detail: str


def post_webhook(config: AlertsConfig, payload: dict) -> str:
    """POST the alert as JSON; returns "HTTP <status>" or raises with the reason."""
    hook = config.webhook
    body = body_bytes(payload)
    headers = {"Content-Type": "application/json", "X-CBM-Alert-Id": payload["alert_id"]}
    if hook.hmac_key_file is not None:
        try:
            key = hook.hmac_key_file.read_bytes().strip()
        except OSError as exc:
            raise RuntimeError(f"hmac_key_file {hook.hmac_key_file}: {exc.strerror}") from None
        if not key:
            raise RuntimeError(f"hmac_key_file {hook.hmac_key_file} is empty")
        headers[SIGNATURE_HEADER] = sign_body(key, body)
    request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=config.timeout_seconds) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the connection: a failing endpoint would leak one per attempt
        raise RuntimeError(f"{hook.url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"{hook.url} could not be reached: {reason}") from None


def email_message(config: AlertsConfig, alert: Alert | Digest, payload: dict) -> EmailMessage:
    mail = config.email
    message = EmailMessage()
    message["From"] = mail.sender
    message["To"] = ", ".join(mail.to)
    message["Subject"] = f"[cbm-verify] {alert.headline()}"
    message["X-CBM-Alert-Id"] = alert.alert_id
    if isinstance(alert, Digest):
        lines = [
            alert.headline() + ".",
            "",
            *(f"- {a.alert_id}: {a.headline()}" for a in alert.alerts),
            "",
            "Acknowledge each: cbm alerts --workdir DIR --ack ALERT_ID --by PARTY",
            "",
            json.dumps(payload, sort_keys=True, indent=2),
        ]
        message.set_content("\n".join(lines) + "\n")
        return message
    lines = [
        alert.headline() + ".",
        "",
        f"Dyad: {alert.subject} (alleged party) / {alert.counterpart} (affected region)",
        f"Level: {alert.level} ({alert.status}); before: {alert.previous_level}",
        f"Thresholds (30-day severity-weighted sum): {', '.join(map(str, payload['thresholds']))}",
        f"Evidence (events): {', '.join(alert.evidence) or 'none'}",
        f"As of: {payload['as_of']}",
        f"Method: {payload['method_version']}",
        f"TLP:{payload['tlp']}",
        "",
        f"Acknowledge: cbm alerts --workdir DIR --ack {alert.alert_id} --by PARTY",
        "",
        json.dumps(payload, sort_keys=True, indent=2),
    ]
    message.set_content("\n".join(lines) + "\n")
    return message


def send_email(config: AlertsConfig, alert: Alert | Digest, payload: dict) -> str:
    mail = config.email
    try:
        with smtplib.SMTP(mail.host, mail.port, timeout=config.timeout_seconds) as smtp:
            refused = smtp.send_message(email_message(config, alert, payload))
    except (smtplib.SMTPException, OSError) as exc:
        raise RuntimeError(f"SMTP {mail.host}:{mail.port}: {exc}") from None
    if refused:
        raise RuntimeError(f"SMTP {mail.host}:{mail.port} refused {sorted(refused)}")
    return f"accepted by {mail.host}:{mail.port} for {len(mail.to)} recipient(s)"


def within(seconds: float, send: Callable[[], str]) -> str:
    """``send()`` with a deadline for the whole of it: a socket timeout bounds each read, so
    an endpoint answering a byte every few seconds held a run for minutes. Past the deadline
    the attempt is a failure; the call goes on in a daemon thread that dies with the process."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["detail"] = send()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="cbm-alert-delivery", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise RuntimeError(f"no complete answer within {seconds:g} s (the endpoint is too slow)")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["detail"]  # type: ignore[return-value]


def deliver(
    config: AlertsConfig,
    alerts: list[Alert],
    pending: Callable[[str, str], bool],
    method_version: str,
    thresholds: tuple[int, ...],
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
) -> list[Attempt]:
    """Send each alert through each configured notifier for which ``pending(alert_id,
    notifier)`` is true, trying up to ``config.attempts`` times (back-off 0.5 s, 1 s, 2 s ...),
    each try within ``config.timeout_seconds`` in all. Every try is returned, so a failure is
    on record with its reason. Delivery stops after ``config.budget_seconds`` for the whole
    call: what is left stays pending (not delivered) and is tried by the next update, so a
    run finishes and publishes whatever the endpoints do."""
    senders = {
        "webhook": lambda alert, payload: post_webhook(config, payload),
        "email": lambda alert, payload: send_email(config, alert, payload),
    }
    attempts: list[Attempt] = []
    stop_at = clock() + config.budget_seconds
    for notifier in config.notifiers:
        waiting = [a for a in alerts if pending(a.alert_id, notifier)]
        for item in told_as(waiting, config.digest_after):
            payload = item.payload(method_version, thresholds)
            members = item.alerts if isinstance(item, Digest) else (item,)
            for n in range(1, config.attempts + 1):
                if clock() >= stop_at:
                    return attempts  # the rest is tried next time
                try:
                    send = functools.partial(senders[notifier], item, payload)
                    detail = within(config.timeout_seconds, send)
                    ok = True
                except RuntimeError as exc:
                    detail, ok = str(exc), False
                if isinstance(item, Digest):
                    detail = f"in digest {item.alert_id} of {len(members)}: {detail}"
                at = now()
                attempts += [Attempt(a.alert_id, notifier, n, at, ok, detail) for a in members]
                if ok:
                    break
                if n < config.attempts:
                    sleep(0.5 * 2 ** (n - 1))
    return attempts
