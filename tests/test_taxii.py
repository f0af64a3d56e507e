"""The TAXII 2.1 server (cbm/taxii.py, `cbm taxii`), driven over loopback by the OASIS client
(taxii2-client, pinned) and, for the exact HTTP answers, by plain requests."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import requests
from taxii2client.v21 import Collection, Server, as_pages

from cbm import stix
from cbm.taxii import (
    RELEASES,
    TAXII,
    Credentials,
    inbox_collection,
    make_server,
    published_records,
)
from cbm.taxii import (
    Server as TaxiiServer,
)
from tests.hostile.corpus import stix_incident


class Running:
    """A server on a free loopback port, and one credential per party it was given."""

    def __init__(
        self,
        publish: Path,
        inbox: Path,
        parties: set[str],
        tmp: Path,
        tls=None,
        client_seconds: float = 30,
        **options,
    ):
        credentials = Credentials(tmp / "secrets" / "taxii.json")
        self.tokens = {p: credentials.issue(p) for p in ("ALPHA", "INTLORG")}
        server = TaxiiServer(publish, inbox, credentials, parties, **options)
        self.httpd = make_server(
            server, port=0, quiet=True, client_seconds=client_seconds, **(tls or {})
        )
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def client(self, party: str | None = None) -> Server:
        auth = {"user": party, "password": self.tokens[party]} if party else {}
        return Server(f"{self.url}/taxii2/", **auth)

    def collection(self, collection_id: str, party: str | None = None) -> Collection:
        auth = {"user": party, "password": self.tokens[party]} if party else {}
        return Collection(f"{self.url}/cbm/collections/{collection_id}/", **auth)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


PARTIES = {"ALPHA", "BRAVO", "INTLORG"}


@pytest.fixture
def published(generated_run, tmp_path):
    project, _ = generated_run
    server = Running(project.publish, tmp_path / "inbox", PARTIES, tmp_path)
    yield project, server
    server.close()


@pytest.fixture
def party_inbox(project, tmp_path):
    (project.publish / "releases").mkdir(parents=True)
    server = Running(project.publish, project.inbox, PARTIES, tmp_path)
    yield project, server
    server.close()


def _bundle_objects(publish: Path) -> dict[str, str]:
    """Every object id of every release's bundle -> its last version."""
    last: dict[str, str] = {}
    for bundle in sorted(publish.glob("releases/*/stix/bundle.json")):
        for obj in json.loads(bundle.read_text())["objects"]:
            version = obj.get("modified") or obj["created"]
            last[obj["id"]] = max(version, last.get(obj["id"], version))
    return last


def test_a_consumer_pulls_every_release_object_page_by_page(published):
    project, server = published
    api_root = server.client().api_roots[0]
    (releases,) = api_root.collections  # anonymous: the releases only
    assert releases.id == RELEASES and releases.can_read and not releases.can_write
    pages = list(as_pages(releases.get_objects, per_request=40))
    objects = [o for page in pages for o in page.get("objects", [])]
    expected = _bundle_objects(project.publish)
    assert len(pages) > 2 and len(objects) == len(expected)
    assert {o["id"]: o.get("modified") or o["created"] for o in objects} == expected
    manifest = releases.get_manifest(limit=10)
    assert manifest["more"] and len(manifest["objects"]) == 10
    assert all(
        row["media_type"] == "application/stix+json;version=2.1" for row in manifest["objects"]
    )
    # added_after the last one added: nothing new
    last = max(r.added for r in published_records(project.publish)[0])
    assert releases.get_objects(added_after=last) == {"more": False}
    incident = next(o for o in objects if o["type"] == "incident")
    (one,) = releases.get_object(incident["id"])["objects"]
    assert one == incident
    versions = releases.object_versions(incident["id"])["versions"]
    assert versions[-1] == incident["modified"]
    by_type = releases.get_objects(type="x-cbm-verdict", limit=1000)["objects"]
    assert {o["type"] for o in by_type} == {stix.VERDICT_TYPE}


def test_the_same_folder_serves_the_same_answers(published):
    project, server = published
    first = requests.get(f"{server.url}/cbm/collections/{RELEASES}/objects/?limit=50", timeout=30)
    again = requests.get(f"{server.url}/cbm/collections/{RELEASES}/objects/?limit=50", timeout=30)
    assert first.content == again.content
    assert first.headers["Content-Type"] == TAXII
    assert first.headers["X-TAXII-Date-Added-First"] <= first.headers["X-TAXII-Date-Added-Last"]


def test_a_party_pushes_a_bundle_that_goes_through_the_same_intake_as_a_file(party_inbox):
    """The same objects as tests/test_stix_misp.py drops into the inbox as a file: the same
    accounting, the same reason."""
    project, server = party_inbox
    good = stix_incident("6ba7b810-9dad-41d1-80b4-00c04fd40009")
    good["extensions"][stix.REPORT_EXTENSION]["alleged_party"] = "Alphaland"
    bare = stix_incident("6ba7b810-9dad-41d1-80b4-00c04fd40008")
    del bare["extensions"][stix.REPORT_EXTENSION]["category"]
    own = [c for c in server.client("INTLORG").api_roots[0].collections if c.can_write]
    assert [c.id for c in own] == [inbox_collection("INTLORG")]
    status = own[0].add_objects({"objects": [good, bare]})
    assert status.status == "complete" and status.success_count == 2
    (written,) = (project.inbox / "INTLORG").iterdir()
    assert written.name.startswith("incidents_taxii-") and written.name.endswith(".stix.json")
    again = own[0].add_objects({"objects": [bare, good]})  # the same objects: the same file
    assert again.success_count == 2 and list((project.inbox / "INTLORG").iterdir()) == [written]
    project.run(ingest_only=True)
    (row,) = project.query(
        "SELECT party_code, status, rows_read, rows_accepted, rows_quarantined FROM submissions"
    )
    assert row == ("INTLORG", "partial", 2, 1, 1)
    assert project.query("SELECT rule FROM quarantine") == [("category_required",)]
    assert project.query("SELECT alleged_party FROM reports_incidents") == [("ALPHA",)]


def test_an_envelope_of_opinions_and_incidents_becomes_one_file_per_kind(party_inbox):
    project, server = party_inbox
    incident = stix_incident("6ba7b810-9dad-41d1-80b4-00c04fd40010")
    opinion = {
        "type": "opinion",
        "spec_version": "2.1",
        "id": "opinion--6ba7b810-9dad-41d1-80b4-00c04fd40011",
        "created": "2026-03-02T00:00:00.000Z",
        "modified": "2026-03-02T00:00:00.000Z",
        "opinion": "agree",
        "object_refs": [incident["id"]],
    }
    server.collection(inbox_collection("ALPHA"), "ALPHA").add_objects(
        {"objects": [incident, opinion]}
    )
    names = sorted(p.name.split("-")[0] for p in (project.inbox / "ALPHA").iterdir())
    assert names == ["attestations_taxii", "incidents_taxii"]


def _post(server, party, collection, body: bytes, **headers):
    auth = (party, server.tokens[party]) if party else None
    return requests.post(
        f"{server.url}/cbm/collections/{collection}/objects/",
        data=body,
        auth=auth,
        headers={"Accept": TAXII, "Content-Type": TAXII} | headers,
        timeout=30,
    )


def test_what_is_not_a_partys_to_do_is_refused_with_taxii_errors(party_inbox):
    project, server = party_inbox
    envelope = json.dumps({"objects": [stix_incident("6ba7b810-9dad-41d1-80b4-00c04fd40012")]})
    alpha = inbox_collection("ALPHA")
    cases = [
        # wrong credential, no credential, another party's collection
        (
            requests.post(
                f"{server.url}/cbm/collections/{alpha}/objects/",
                data=envelope,
                auth=("ALPHA", "not-the-credential"),
                headers={"Content-Type": TAXII},
                timeout=30,
            ),
            401,
        ),
        (_post(server, None, alpha, envelope.encode()), 401),
        (_post(server, "INTLORG", alpha, envelope.encode()), 403),
        # the releases are read-only; a party's own collection is write-only
        (_post(server, "ALPHA", RELEASES, envelope.encode()), 403),
        (
            requests.get(
                f"{server.url}/cbm/collections/{alpha}/objects/",
                auth=("ALPHA", server.tokens["ALPHA"]),
                timeout=30,
            ),
            403,
        ),
        # malformed, empty, nothing intake reads, the wrong media types
        (_post(server, "ALPHA", alpha, b"{not json"), 400),
        (_post(server, "ALPHA", alpha, b'{"objects": []}'), 400),
        (_post(server, "ALPHA", alpha, b'{"objects": [{"type": "identity"}]}'), 400),
        (
            _post(
                server,
                "ALPHA",
                alpha,
                json.dumps({"objects": [{"type": "identity", "id": "identity--x"}]}).encode(),
            ),
            422,
        ),
        (_post(server, "ALPHA", alpha, envelope.encode(), **{"Content-Type": "text/plain"}), 415),
        (_post(server, "ALPHA", alpha, envelope.encode(), Accept="text/html"), 406),
        (requests.get(f"{server.url}/cbm/collections/nope/", timeout=30), 404),
    ]
    for response, status in cases:
        assert response.status_code == status, (status, response.text)
        error = response.json()
        assert error["http_status"] == str(status) and error["title"], error
        assert response.headers["Content-Type"] == TAXII
    assert not (project.inbox / "ALPHA").exists()  # nothing refused reached the inbox
    with pytest.raises(requests.HTTPError) as refused:  # the OASIS client, wrong credential
        Server(f"{server.url}/taxii2/", user="ALPHA", password="wrong").refresh()
    assert refused.value.response.status_code == 401


def test_an_oversized_envelope_is_refused_before_it_is_read(party_inbox, tmp_path):
    project, _ = party_inbox
    small = Running(
        project.publish, project.inbox, PARTIES, tmp_path / "s", max_content_length=2048
    )
    try:
        big = json.dumps(
            {
                "objects": [
                    stix_incident("6ba7b810-9dad-41d1-80b4-00c04fd40013", description="x" * 4096)
                ]
            }
        ).encode()
        response = _post(small, "ALPHA", inbox_collection("ALPHA"), big)
        assert response.status_code == 413 and "2,048" in response.json()["description"]
        root = requests.get(f"{small.url}/cbm/", headers={"Accept": TAXII}, timeout=30).json()
        assert root["max_content_length"] == 2048
    finally:
        small.close()
    assert not (project.inbox / "ALPHA").exists()


def test_nothing_unpublished_is_served(generated_run, tmp_path):
    """A release the changelog does not list (built, held, or copied in by hand) or whose
    files no longer match its manifest is not served."""
    project, _ = generated_run
    publish = tmp_path / "publish"
    shutil.copytree(project.publish, publish)
    records, served = published_records(publish)
    assert served and records
    (release,) = [publish / "releases" / r for r in served[:1]]
    bundle = release / "stix" / "bundle.json"
    bundle.write_text(bundle.read_text().replace("incident", "incident ", 1))  # edited afterwards
    assert release.name not in published_records(publish)[1]
    stranger = publish / "releases" / "r-00000000000000000000"
    shutil.copytree(project.publish / "releases" / served[0], stranger)
    assert stranger.name not in published_records(publish)[1]
    changelog = publish / "CHANGELOG.jsonl"
    kept = published_records(publish)[1]
    changelog.write_text("{not json\n[1, 2]\n" + changelog.read_text() + '{"as_of": "x"}\n')
    assert published_records(publish)[1] == kept  # stray lines: skipped, nothing raises
    changelog.unlink()
    assert published_records(publish) == ([], [])


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as a deployment's would be (docs)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        # its own anchor: a CA as strict verification wants one, with its key identifiers
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "taxii.crt", folder / "taxii.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_over_tls_the_client_checks_the_servers_certificate(party_inbox, tmp_path, monkeypatch):
    project, _ = party_inbox
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests prefers them to verify=
        monkeypatch.delenv(name, raising=False)
    cert, key = _self_signed(tmp_path / "tls")
    tls = {"certfile": cert, "keyfile": key}
    server = Running(project.publish, project.inbox, PARTIES, tmp_path / "t", tls=tls)
    try:
        client = Server(
            f"{server.url}/taxii2/", user="ALPHA", password=server.tokens["ALPHA"], verify=str(cert)
        )
        assert [c.can_write for c in client.api_roots[0].collections] == [False, True]
        with pytest.raises(requests.exceptions.SSLError):  # a certificate it cannot check
            Server(f"{server.url}/taxii2/").refresh()
    finally:
        server.close()


def test_operator_mistakes_give_one_line_and_exit_2(tmp_path, capsys, generated_run):
    from pipelines.cli import main

    project, _ = generated_run
    creds = tmp_path / "taxii.json"
    registry = str(project.registry)

    def credential(party: str) -> int:
        args = ["--credentials", str(creds), "--party", party, "--registry", registry]
        return main(["taxii-credential", *args])

    assert credential("NOPE") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "NOPE" in err and "ALPHA" in err
    assert credential("ALPHA") == 0
    out = capsys.readouterr()
    assert len(out.out.strip()) == 32 and "ALPHA" not in out.out  # the credential alone
    assert Credentials(creds).check("ALPHA", out.out.strip())
    assert "ALPHA" in json.loads(creds.read_text()) and out.out.strip() not in creds.read_text()
    for argv, named in (
        (["--publish", str(tmp_path / "nope")], "--publish"),
        (["--credentials", str(tmp_path)], "--credentials"),
        (["--tls-cert", str(creds)], "--tls-cert"),
    ):
        base = {
            "--publish": str(project.publish),
            "--inbox": str(project.inbox),
            "--registry": registry,
            "--credentials": str(creds),
        }
        base.update(dict(zip(argv[::2], argv[1::2], strict=True)))
        assert main(["taxii", *(x for kv in base.items() for x in kv)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and named in err, err


def test_an_unexpected_error_is_a_taxii_error_and_the_server_goes_on(party_inbox, monkeypatch):
    _, server = party_inbox
    answer = TaxiiServer.answer

    def broken(self, method, path, *args):
        if path.endswith("/collections/"):
            raise RuntimeError("disk gone")
        return answer(self, method, path, *args)

    monkeypatch.setattr(TaxiiServer, "answer", broken)
    failed = requests.get(f"{server.url}/cbm/collections/", timeout=30)
    assert failed.status_code == 500 and failed.json()["http_status"] == "500"
    assert "disk gone" not in failed.text  # the server's log has it, not the client
    assert requests.get(f"{server.url}/taxii2/", timeout=30).status_code == 200


def test_a_silent_client_is_dropped_and_others_are_served_meanwhile(party_inbox, tmp_path):
    import socket

    project, _ = party_inbox
    server = Running(project.publish, project.inbox, PARTIES, tmp_path / "q", client_seconds=1)
    try:
        port = server.httpd.server_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"GET /taxii2/ HTTP/1.1\r\nHost: x\r\n")  # and then nothing
            assert requests.get(f"{server.url}/taxii2/", timeout=10).status_code == 200
            assert slow.recv(1024) == b""  # closed by the server after a second of silence
    finally:
        server.close()


def test_the_own_release_pushed_back_over_taxii_is_quarantined_as_a_copy(generated_run, tmp_path):
    """A party pulls the published release over TAXII and posts it back as its own report:
    intake's own-release rules quarantine every row, as for the same bundle dropped as a file
    (tests/test_refusals.py)."""
    original, _ = generated_run
    project = original.copy(tmp_path / "deployment")
    server = Running(project.publish, project.inbox, PARTIES, tmp_path)
    try:
        releases = server.collection(RELEASES, "ALPHA")
        objects = [
            o
            for page in as_pages(releases.get_objects, per_request=500)
            for o in page.get("objects", [])
        ]
        status = server.collection(inbox_collection("ALPHA"), "ALPHA").add_objects(
            {"objects": objects}
        )
        assert status.success_count == len(objects)
    finally:
        server.close()
    (pushed,) = (project.inbox / "ALPHA").glob("incidents_taxii-*.stix.json")
    project.run(ingest_only=True)
    ((read, accepted, quarantined),) = project.query(
        "SELECT rows_read, rows_accepted, rows_quarantined FROM submissions WHERE file_name = ?",
        [pushed.name],
    )
    assert read > 0 and accepted == 0 and quarantined == read
    rules = project.query(
        "SELECT DISTINCT q.rule FROM quarantine q JOIN submissions s ON s.sha256 = q.submission_sha "
        "WHERE s.file_name = ? AND q.severity = 'critical' ORDER BY 1",
        [pushed.name],
    )
    assert ("copy_of_own_release",) in rules


def test_a_credential_checked_once_is_not_derived_again_and_others_still_fail(
    tmp_path, monkeypatch
):
    import cbm.taxii as taxii

    credentials = Credentials(tmp_path / "taxii.json")
    token = credentials.issue("ALPHA")
    derived = []
    derive = taxii._derive
    monkeypatch.setattr(taxii, "_derive", lambda *a: derived.append(1) or derive(*a))
    assert credentials.check("ALPHA", token) and credentials.check("ALPHA", token)
    assert len(derived) == 1  # the second request costs a keyed hash only
    assert not credentials.check("ALPHA", token + "x")
    assert not credentials.check("BRAVO", token)  # another party's name, the same credential
    assert not Credentials(tmp_path / "taxii.json").check("ALPHA", "wrong")
