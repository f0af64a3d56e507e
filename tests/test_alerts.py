"""Threshold alerts: configuration, delivery to real local servers (HTTP, aiosmtpd) with retries
and a record of failures, and one end-to-end run where a new submission raises one alert."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from cbm.alerts import SIGNATURE_HEADER, Alert, deliver
from cbm.registry import AlertsConfig, Email, RegistryError, Webhook, load_policy, load_registry
from tests.alert_servers import SmtpServer, WebhookServer, free_port
from tests.conftest import incident, write_csv

ALERT = Alert(
    alert_id="A-0123456789abcdef",
    subject="Alphaland",
    counterpart="EST",
    level=2,
    previous_level=0,
    status="tentative",
    reason="rise",
    evidence=("E-00000000000000aa", "E-00000000000000bb"),
    tlp_rank=1,
    as_of=datetime(2026, 3, 10, 12, tzinfo=UTC),
)
PAYLOAD_KEYS = {
    "schema",
    "alert_id",
    "dyad",
    "level",
    "previous_level",
    "status",
    "reason",
    "evidence_event_ids",
    "as_of",
    "thresholds",
    "method_version",
    "tlp",
}


def _deliver(config, alerts=(ALERT,), pending=lambda a, n: True):
    waits: list[float] = []
    attempts = deliver(config, list(alerts), pending, "m-test", (5, 15, 30, 60, 100), waits.append)
    return attempts, waits


def test_webhook_receives_signed_json(tmp_path):
    key = tmp_path / "hook.key"
    key.write_bytes(b"shared-secret\n")
    with WebhookServer() as server:
        attempts, _ = _deliver(AlertsConfig(webhook=Webhook(server.url, key)))
    assert [(a.notifier, a.attempt, a.ok, a.detail) for a in attempts] == [
        ("webhook", 1, True, "HTTP 200")
    ]
    (request,) = server.requests
    expected = "sha256=" + hmac.new(b"shared-secret", request["body"], hashlib.sha256).hexdigest()
    assert request["headers"][SIGNATURE_HEADER.lower()] == expected
    payload = json.loads(request["body"])
    assert set(payload) == PAYLOAD_KEYS
    assert payload["dyad"] == {"subject": "Alphaland", "counterpart": "EST"}
    assert payload["evidence_event_ids"] == list(ALERT.evidence)
    assert payload["tlp"] == "GREEN" and payload["as_of"] == "2026-03-10T12:00:00+00:00"


def test_webhook_failures_are_retried_then_recorded():
    with WebhookServer(statuses=[500, 503, 500]) as server:
        attempts, waits = _deliver(AlertsConfig(webhook=Webhook(server.url), attempts=3))
    assert len(server.requests) == 3
    assert [(a.attempt, a.ok) for a in attempts] == [(1, False), (2, False), (3, False)]
    assert "answered HTTP 500" in attempts[0].detail and "HTTP 503" in attempts[1].detail
    assert waits == [0.5, 1.0]  # back-off between tries, none after the last


def test_webhook_retry_that_succeeds_stops_there():
    with WebhookServer(statuses=[502]) as server:
        attempts, _ = _deliver(AlertsConfig(webhook=Webhook(server.url), attempts=5))
    assert [(a.attempt, a.ok) for a in attempts] == [(1, False), (2, True)]
    assert len(server.requests) == 2


def test_missing_hmac_key_is_a_recorded_failure(tmp_path):
    with WebhookServer() as server:
        attempts, _ = _deliver(
            AlertsConfig(webhook=Webhook(server.url, tmp_path / "absent.key"), attempts=2)
        )
    assert not server.requests
    assert [a.ok for a in attempts] == [False, False]
    assert "absent.key" in attempts[0].detail


def test_email_reaches_an_smtp_server():
    with SmtpServer() as smtp:
        config = AlertsConfig(
            email=Email(
                "127.0.0.1", smtp.port, "cbm@secretariat.example", ("desk@ministry.example",)
            )
        )
        attempts, _ = _deliver(config)
    assert [(a.notifier, a.ok) for a in attempts] == [("email", True)]
    (message,) = smtp.messages
    assert smtp.envelopes[0].rcpt_tos == ["desk@ministry.example"]
    assert message["Subject"] == (
        "[cbm-verify] Escalation Alphaland / EST: rose from 0 to 2 (tentative)"
    )
    assert message["X-CBM-Alert-Id"] == ALERT.alert_id
    body = message.get_payload(decode=True).decode()
    assert "E-00000000000000aa, E-00000000000000bb" in body
    assert f"--ack {ALERT.alert_id}" in body


def test_unreachable_smtp_is_recorded_with_its_reason():
    port = free_port()  # nothing listens there
    config = AlertsConfig(
        email=Email("127.0.0.1", port, "a@b.example", ("c@d.example",)), attempts=2
    )
    attempts, waits = _deliver(config)
    assert [a.ok for a in attempts] == [False, False]
    assert f"SMTP 127.0.0.1:{port}" in attempts[0].detail
    assert waits == [0.5]


def test_only_pending_notifiers_are_tried():
    with WebhookServer() as server, SmtpServer() as smtp:
        config = AlertsConfig(
            webhook=Webhook(server.url),
            email=Email("127.0.0.1", smtp.port, "a@b.example", ("c@d.example",)),
        )
        attempts, _ = _deliver(config, pending=lambda alert_id, notifier: notifier == "email")
    assert [a.notifier for a in attempts] == ["email"]
    assert not server.requests and len(smtp.messages) == 1


POLICY_ALERTS = {
    "webhook": {"url": "https://hooks.example/cbm", "hmac_key_file": "hook.key"},
    "email": {"smtp": "mail.example:25", "from": "cbm@sec.example", "to": ["a@b.example"]},
}


def _policy_with(tmp_path: Path, alerts) -> Path:
    from cbm.generate import POLICY

    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY | {"alerts": alerts}))
    return path


def test_alerts_config_is_read_and_left_out_of_the_method(tmp_path):
    from cbm.generate import POLICY

    policy = load_policy(_policy_with(tmp_path, POLICY_ALERTS))
    assert policy.alerts.webhook == Webhook("https://hooks.example/cbm", tmp_path / "hook.key")
    assert policy.alerts.email == Email("mail.example", 25, "cbm@sec.example", ("a@b.example",))
    assert policy.alerts.notifiers == ("webhook", "email")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    assert policy.raw == load_policy(plain / "policy.yaml").raw  # alerts: not part of the method


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        ({"webhook": {"url": "ftp://x"}}, "is not an http(s) URL"),
        ({"webhook": {}}, "needs url"),
        (
            {"email": {"smtp": "mail.example", "from": "a@b.c", "to": ["d@e.f"]}},
            "must be host:port",
        ),
        ({"email": {"smtp": "m:25", "from": "a@b.c", "to": ["nobody"]}}, "e-mail addresses"),
        ({"email": {"smtp": "m:25", "to": ["d@e.f"]}}, "field 'from' is required"),
        ({"pager": {}}, "unknown keys ['pager']"),
        ({"attempts": 0}, "'attempts' must be >= 1"),
        ("yes", "must be a mapping"),
    ],
)
def test_a_bad_alerts_block_names_the_problem(tmp_path, alerts, message):
    with pytest.raises(RegistryError, match="alerts") as err:
        load_policy(_policy_with(tmp_path, alerts))
    assert message in str(err.value)


def test_a_new_submission_over_the_threshold_sends_one_alert_each(project, capsys):
    """End to end: the first run leaves the dyad at level 0; a second party's report makes the
    event tentative, its severity (5) reaches the first threshold, and the webhook and the SMTP
    server each receive exactly one alert; a third run with nothing new sends nothing."""
    from pipelines.cli import main

    (project.registry / "hook.key").write_text("k3y\n")
    policy = yaml.safe_load((project.registry / "policy.yaml").read_text())
    with WebhookServer() as hook, SmtpServer() as smtp:
        policy["alerts"] = {
            "webhook": {"url": hook.url, "hmac_key_file": "hook.key"},
            "email": {
                "smtp": f"127.0.0.1:{smtp.port}",
                "from": "cbm@sec.example",
                "to": ["desk@x.example"],
            },
        }
        (project.registry / "policy.yaml").write_text(yaml.safe_dump(policy))
        first = incident("I-1", severity=5, alleged_party="ALPHA", region="EST")
        write_csv(project.inbox / "BRAVO" / "incidents_a.csv", [first])
        project.run()
        assert project.query("SELECT count(*) FROM alerts") == [(0,)]
        assert not hook.requests and not smtp.messages

        second = incident("I-2", severity=4, occurred_at="2026-03-01T11:00:00+00:00")
        write_csv(project.inbox / "DELTA" / "incidents_b.csv", [second])
        summary = project.run()
        assert len(hook.requests) == 1 and len(smtp.messages) == 1
        assert (summary["alerts"], summary["alerts_unacknowledged"]) == (1, 1)
        project.run()  # nothing new: no second alert, no second delivery
        assert len(hook.requests) == 1 and len(smtp.messages) == 1

    (payload,) = hook.payloads()
    assert payload["dyad"] == {"subject": "Alphaland", "counterpart": "EST"}
    assert (payload["level"], payload["previous_level"], payload["status"]) == (1, 0, "tentative")
    (event_id,) = payload["evidence_event_ids"]
    assert project.query("SELECT status FROM incident_clusters WHERE event_id = ?", [event_id]) == [
        ("tentative",)
    ]
    # nothing but publishable content: no pseudonym, no summary text
    pseudonyms = [p for (p,) in project.query("SELECT pseudonym FROM party_directory")]
    sent = hook.requests[0]["body"].decode() + smtp.messages[0].as_string()
    assert not [p for p in pseudonyms if p in sent]
    assert "crossing" not in sent
    assert smtp.messages[0]["X-CBM-Alert-Id"] == payload["alert_id"]
    deliveries = project.query("SELECT notifier, ok FROM alert_deliveries ORDER BY notifier")
    assert deliveries == [("email", True), ("webhook", True)]

    # acknowledged through the CLI, and kept
    capsys.readouterr()
    assert main(["alerts", "--workdir", str(project.workdir), "--open", "--json"]) == 0
    assert [a["alert_id"] for a in json.loads(capsys.readouterr().out)["alerts"]] == [
        payload["alert_id"]
    ]
    args = ["alerts", "--workdir", str(project.workdir), "--ack", payload["alert_id"]]
    # as an operator runs it: no DAGSTER_HOME, the instance where cbm run puts it by default
    import os

    home = os.environ.pop("DAGSTER_HOME")
    (project.workdir / "dagster_home").symlink_to(home)
    try:
        assert main([*args, "--by", "INTLORG", "--note", "desk informed"]) == 0
    finally:
        os.environ["DAGSTER_HOME"] = home
    # the UI's check says so at once, on the alerts' latest materialization, and the
    # acknowledgement is a materialization of alert_acks, the table only this command writes
    import dagster as dg

    check = dg.AssetCheckKey(dg.AssetKey("alerts"), "alerts_acknowledged")
    with dg.DagsterInstance.get() as instance:
        (latest,) = instance.event_log_storage.get_asset_check_execution_history(check, limit=1)
        evaluation = latest.event.dagster_event.event_specific_data
        (ack,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("alert_acks")), limit=1
        ).records
    assert evaluation.passed and evaluation.description == "every alert acknowledged"
    assert ack.event_log_entry.asset_materialization.metadata["by"].value == "INTLORG"
    assert "now says: 0 not acknowledged" in capsys.readouterr().out
    capsys.readouterr()
    assert main(["alerts", "--workdir", str(project.workdir), "--open", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"alerts": []}
    assert project.query("SELECT alert_id, by_party, note FROM alert_acks") == [
        (payload["alert_id"], "INTLORG", "desk informed")
    ]
    assert main([*args, "--by", "NOSUCH"]) == 2
    assert (
        main(["alerts", "--workdir", str(project.workdir), "--ack", "A-none", "--by", "ALPHA"]) == 2
    )


def test_registry_with_alerts_loads_from_its_folder(tmp_path):
    from tests.conftest import write_registry

    registry = write_registry(tmp_path / "registry")
    policy = yaml.safe_load((registry / "policy.yaml").read_text())
    policy["alerts"] = {"webhook": {"url": "http://127.0.0.1:9/x", "hmac_key_file": "k"}}
    (registry / "policy.yaml").write_text(yaml.safe_dump(policy))
    assert load_registry(registry).policy.alerts.webhook.hmac_key_file == registry / "k"


class _TricklingServer:
    """An endpoint on loopback that answers one header byte every ``every`` seconds, for at
    most ``bytes_`` bytes (bounded: it stops by itself)."""

    def __init__(self, every: float = 0.4, bytes_: int = 40):
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.every, self.bytes_ = every, bytes_
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import time

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    for byte in b"HTTP/1.1 200 OK\r\n"[: self.bytes_]:
                        conn.sendall(bytes([byte]))
                        time.sleep(self.every)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def test_a_trickling_webhook_is_a_failure_within_its_deadline():
    import time

    server = _TricklingServer()
    try:
        config = AlertsConfig(webhook=Webhook(server.url), attempts=1, timeout_seconds=1.0)
        started = time.monotonic()
        attempts, _ = _deliver(config)
        took = time.monotonic() - started
    finally:
        server.close()
    # each read came within the socket timeout: only a deadline for the whole try ends it
    assert took < 3, took
    assert [(a.ok, a.detail) for a in attempts] == [
        (False, "no complete answer within 1 s (the endpoint is too slow)")
    ]


def test_delivery_stops_at_its_budget_and_leaves_the_rest_pending():
    server = _TricklingServer()
    alerts = [  # about five parties: no digest
        ALERT,
        *(
            Alert(**{**ALERT.__dict__, "alert_id": f"A-{i:016x}", "subject": f"S{i}"})
            for i in range(5)
        ),
    ]
    ticks = iter(range(0, 1000, 10))  # a clock that moves 10 s a look
    try:
        config = AlertsConfig(
            webhook=Webhook(server.url), attempts=1, timeout_seconds=0.2, budget_seconds=25
        )
        attempts = deliver(
            config, alerts, lambda a, n: True, "m", (5, 15, 30, 60, 100), lambda s: None,
            clock=lambda: next(ticks),
        )  # fmt: skip
    finally:
        server.close()
    assert [a.alert_id for a in attempts] == [alerts[0].alert_id, alerts[1].alert_id]


def test_many_alerts_about_one_party_in_one_update_are_one_digest():
    flood = [
        Alert(**{**ALERT.__dict__, "alert_id": f"A-{i:016x}", "counterpart": f"R{i:02d}"})
        for i in range(10)
    ]
    other = Alert(**{**ALERT.__dict__, "alert_id": "A-ffffffffffffffff", "subject": "Bravoland"})
    with WebhookServer() as server:
        attempts, _ = _deliver(AlertsConfig(webhook=Webhook(server.url)), alerts=[*flood, other])
        posted = server.payloads()
    assert len(posted) == 2  # one digest, one alert
    digest = next(p for p in posted if p["schema"] == "cbm-verify/alert-digest/1")
    assert digest["count"] == 10 and digest["subject"] == "Alphaland"
    assert sorted(a["alert_id"] for a in digest["alerts"]) == sorted(a.alert_id for a in flood)
    # every alert is on record as delivered, each with the digest named
    assert sorted(a.alert_id for a in attempts if a.ok) == sorted(
        a.alert_id for a in [*flood, other]
    )
    assert all("in digest D-" in a.detail for a in attempts if a.alert_id != other.alert_id)


def test_a_digest_by_email_lists_every_alert():
    flood = [Alert(**{**ALERT.__dict__, "alert_id": f"A-{i:016x}"}) for i in range(4)]
    with SmtpServer() as smtp:
        config = AlertsConfig(
            email=Email("127.0.0.1", smtp.port, "cbm@secretariat.example", ("d@m.example",))
        )
        attempts, _ = _deliver(config, alerts=flood)
    (message,) = smtp.messages
    assert " ".join(message["Subject"].split()) == (  # a long subject is folded
        "[cbm-verify] 4 escalation alerts for Alphaland in one update (highest level 2)"
    )
    body = message.get_payload(decode=True).decode()
    assert all(f"- {a.alert_id}: Escalation Alphaland" in body for a in flood)
    assert len([a for a in attempts if a.ok]) == 4
