"""A TAXII 2.1 server over a publish folder and an inbox (contract §7; docs/interoperability.md,
"TAXII 2.1").

- **Releases**, read-only, open to anyone: every object of every published release's
  ``stix/bundle.json``. A release is served only when the publish folder's changelog lists it
  and its files match its manifest (``verify_release``, checked when the server first reads
  the changelog and again whenever it changes): nothing built but held, nothing half
  written, nothing edited after publication. An object version is "added" when the first
  release holding it was: the release's ``as_of``, kept strictly increasing in changelog order,
  so ``added_after`` pages are stable and the same folder always serves the same answers.
- **One write-only collection per party**, seen and written only by that party (HTTP Basic,
  the party's code and a credential of its own, kept as a salted hash outside the
  repository: ``Credentials``). What a party posts is written whole into its inbox folder as
  one STIX bundle per report kind (``<kind>_taxii-<hash>.stix.json``), which then goes
  through intake as any file the party dropped there: the same rules, the same accounting,
  the same reasons. The same objects posted twice give the same file.

Errors are TAXII error objects with the HTTP status TAXII names (400, 401, 403, 404, 406,
413, 415, 422). Plain Python (``http.server``): no Dagster, no validation stack.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import ssl
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from cbm import stix
from cbm.files import write_atomic
from cbm.release import verify_release

TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"
API_ROOT = "cbm"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://cbm-verify.invalid/taxii")
RELEASES = str(uuid.uuid5(NAMESPACE, "collection:releases"))
DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000
MAX_CONTENT_LENGTH = 10 * 1024 * 1024  # bytes of one POST; the API root says so
# the STIX type of each report kind intake reads from a bundle, the other way round
KIND_OF_TYPE = {stix_type: kind for kind, stix_type in stix.ROW_TYPES.items()}
ITERATIONS = 200_000  # PBKDF2-SHA256 rounds of a stored credential
KEPT_STATUSES = 10_000  # status resources kept in memory for GET status/<id>/, newest


class TaxiiError(Exception):
    """An answer that is a TAXII error object."""

    def __init__(self, status: int, title: str, description: str = ""):
        super().__init__(title)
        self.status, self.title, self.description = status, title, description

    def body(self) -> dict:
        out = {"title": self.title, "http_status": str(self.status)}
        return out | ({"description": self.description} if self.description else {})


def inbox_collection(party: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"collection:inbox:{party}"))


# -- credentials -------------------------------------------------------------------------------


class Credentials:
    """Party code -> salted PBKDF2 hash of its credential, in a JSON file kept outside the
    repository (``cbm taxii-credential`` writes it; the server only reads it)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._entries = json.loads(self.path.read_text()) if self.path.exists() else {}
        if not isinstance(self._entries, dict):
            raise ValueError(f"{self.path}: not a credentials file (a JSON object expected)")
        # credentials already checked, by party: a keyed digest of each, so a party's next
        # request costs a hash, not another PBKDF2 derivation (the file is read at start only)
        self._key = secrets.token_bytes(32)
        self._checked: dict[str, bytes] = {}

    def parties(self) -> list[str]:
        return sorted(self._entries)

    def issue(self, party: str) -> str:
        """A new credential for ``party`` (replacing its last); returns it, keeps its hash."""
        token = secrets.token_urlsafe(24)
        salt = secrets.token_bytes(16)
        self._entries[party] = {
            "salt": salt.hex(),
            "iterations": ITERATIONS,
            "sha256": _derive(token, salt, ITERATIONS).hex(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self._entries, indent=1, sort_keys=True) + "\n")
        self.path.chmod(0o600)
        return token

    def check(self, party: str, token: str) -> bool:
        digest = hmac.digest(self._key, token.encode(), "sha256")
        if hmac.compare_digest(self._checked.get(party, b""), digest):
            return True
        entry = self._entries.get(party)
        try:
            expected = bytes.fromhex(entry["sha256"])
            got = _derive(token, bytes.fromhex(entry["salt"]), int(entry["iterations"]))
        except (TypeError, KeyError, ValueError):  # an unknown party, or an entry unreadable
            _derive(token, b"\0" * 16, ITERATIONS)  # the same time as a known one
            return False
        if not hmac.compare_digest(expected, got):
            return False
        self._checked[party] = digest
        return True


def _derive(token: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", token.encode(), salt, iterations)


# -- what is served ----------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Record:
    """One version of one object, as TAXII lists it."""

    added: str  # date_added, TAXII's timestamp form
    id: str
    version: str
    obj: dict = field(compare=False, hash=False)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_stamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise TaxiiError(400, "bad timestamp", f"not a timestamp: {text!r}") from None


def published_records(publish: Path) -> tuple[list[Record], list[str]]:
    """Every object version of every release the changelog of ``publish`` lists and whose
    files match their manifest, in the order TAXII pages them; and the releases served."""
    changelog = publish / "CHANGELOG.jsonl"
    lines = changelog.read_text().splitlines() if changelog.exists() else []
    first: dict[tuple[str, str], Record] = {}
    served, last = [], None
    for line in lines:
        release = _release_objects(publish, line)
        if release is None:  # not a published release, or not one that checks: not served
            continue
        name, moment, objects = release
        if last is not None and moment <= last:  # kept strictly increasing
            moment = last + timedelta(microseconds=1)
        last = moment
        served.append(name)
        for obj in objects:
            version = obj.get("modified") or obj.get("created") or ""
            key = (obj["id"], version)
            if key not in first:
                first[key] = Record(_stamp(moment), obj["id"], version, obj)
    return sorted(first.values()), served


def _release_objects(publish: Path, line: str) -> tuple[str, datetime, list[dict]] | None:
    """A changelog line's release: its name, as-of time and STIX objects, when the line names
    a release whose files match its manifest; None for anything else (nothing raises)."""
    try:
        entry = json.loads(line) if line.strip() else None
        if not isinstance(entry, dict):
            return None
        folder = publish / "releases" / str(entry.get("release_id"))
        bundle = folder / "stix" / "bundle.json"
        if not bundle.is_file() or not verify_release(folder)[0]:
            return None
        moment = _parse_stamp(str(entry.get("as_of")))
        objects = json.loads(bundle.read_bytes()).get("objects", [])
        if not all(isinstance(o, dict) and isinstance(o.get("id"), str) for o in objects):
            return None
        return folder.name, moment, objects
    except (ValueError, OSError, TaxiiError, AttributeError):
        return None


class Served:
    """The releases' records, read again when the changelog changes."""

    def __init__(self, publish: Path):
        self.publish = Path(publish)
        self._lock = threading.Lock()
        self._stamp = None
        self._records: list[Record] = []
        self.releases: list[str] = []  # the releases served, in changelog order

    def records(self) -> list[Record]:
        path = self.publish / "CHANGELOG.jsonl"
        try:
            st = path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._records, self.releases = (
                    published_records(self.publish) if stamp else ([], [])
                )
                self._stamp = stamp
            return self._records


def select(records: list[Record], query: dict[str, list[str]], object_id: str | None = None):
    """The records a GET asks for: ``match[id]``, ``match[type]``, ``match[version]`` (last by
    default; first, all, or timestamps), ``added_after``; in TAXII's order."""
    ids = set(_values(query, "match[id]")) | ({object_id} if object_id else set())
    types = set(_values(query, "match[type]"))
    versions = _values(query, "match[version]") or ["last"]
    after = query.get("added_after", [None])[0]
    chosen = [
        r
        for r in records
        if (not ids or r.id in ids) and (not types or r.id.split("--", 1)[0] in types)
    ]
    by_id: dict[str, list[Record]] = {}
    for r in chosen:
        by_id.setdefault(r.id, []).append(r)
    keep = set()
    for versions_of in by_id.values():
        ordered = sorted(versions_of, key=lambda r: r.version)
        for wanted in versions:
            if wanted == "all":
                keep.update(ordered)
            elif wanted == "last":
                keep.add(ordered[-1])
            elif wanted == "first":
                keep.add(ordered[0])
            else:
                keep.update(r for r in ordered if r.version == wanted)
    chosen = [r for r in chosen if r in keep]
    if after:
        bound = _stamp(_parse_stamp(after))
        chosen = [r for r in chosen if r.added > bound]
    return chosen


def _values(query: dict[str, list[str]], name: str) -> list[str]:
    return [v for value in query.get(name, []) for v in value.split(",") if v]


def page(chosen: list[Record], query: dict[str, list[str]]) -> tuple[list[Record], str | None]:
    """One page of ``chosen`` (``limit``, ``next``) and the ``next`` of the page after it."""
    try:
        limit = int(query.get("limit", [DEFAULT_LIMIT])[0])
        start = int(base64.urlsafe_b64decode(query["next"][0]).decode()) if "next" in query else 0
    except (ValueError, UnicodeDecodeError):
        raise TaxiiError(400, "bad paging", "limit must be a whole number, next a token") from None
    if limit < 1 or start < 0:
        raise TaxiiError(400, "bad paging", "limit must be at least 1")
    limit = min(limit, MAX_LIMIT)
    shown = chosen[start : start + limit]
    more = start + limit < len(chosen)
    return shown, base64.urlsafe_b64encode(str(start + limit).encode()).decode() if more else None


# -- what a party posts ------------------------------------------------------------------------


def accept_envelope(inbox: Path, party: str, body: bytes) -> dict:
    """Write a party's posted envelope into its inbox folder, a bundle per report kind; return
    the status resource. Refuses, as TAXII errors, what is not an envelope of STIX objects or
    holds nothing intake reads."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TaxiiError(400, "not JSON", f"the envelope does not parse: {exc}") from None
    objects = envelope.get("objects") if isinstance(envelope, dict) else None
    if not isinstance(objects, list) or not objects:
        raise TaxiiError(400, "not an envelope", "a TAXII envelope has a list of objects")
    bad = [
        n
        for n, o in enumerate(objects)
        if not (isinstance(o, dict) and "--" in str(o.get("id", "")) and o.get("type"))
    ]
    if bad:
        raise TaxiiError(400, "not STIX objects", f"objects {bad[:5]} have no type or id")
    kinds = sorted({KIND_OF_TYPE[o["type"]] for o in objects if o["type"] in KIND_OF_TYPE})
    if not kinds:
        raise TaxiiError(
            422,
            "nothing to report",
            "an envelope must hold incident or opinion objects (contract §7)",
        )
    context = [o for o in objects if o["type"] not in KIND_OF_TYPE]
    written = []
    for kind in kinds:
        rows = [o for o in objects if KIND_OF_TYPE.get(o["type"]) == kind]
        content = json.dumps(
            sorted(context + rows, key=lambda o: (o["type"], o["id"])), sort_keys=True
        ).encode()
        digest = hashlib.sha256(content).hexdigest()
        bundle = {
            "type": "bundle",
            "id": f"bundle--{uuid.uuid5(NAMESPACE, digest)}",
            "objects": json.loads(content),
        }
        path = inbox / party / f"{kind}_taxii-{digest[:16]}.stix.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            write_atomic(path, json.dumps(bundle, indent=1, sort_keys=True) + "\n")
        written.append(path.name)
    now = _stamp(datetime.now(UTC))
    successes = [
        {
            "id": o["id"],
            "version": o.get("modified") or o.get("created") or "",
            "message": ", ".join(written),
        }
        for o in objects
    ]
    return {
        "id": str(uuid.uuid4()),
        "status": "complete",
        "request_timestamp": now,
        "total_count": len(objects),
        "success_count": len(objects),
        "successes": successes,
        "failure_count": 0,
        "failures": [],
        "pending_count": 0,
        "pendings": [],
    }


# -- the HTTP server ---------------------------------------------------------------------------


@dataclass
class Server:
    """What the handler serves: the publish folder, the inbox, the parties' credentials."""

    publish: Path
    inbox: Path
    credentials: Credentials
    parties: set[str]
    max_content_length: int = MAX_CONTENT_LENGTH
    title: str = "cbm-verify"

    def __post_init__(self):
        self.served = Served(self.publish)
        self.statuses: dict[str, tuple[str, dict]] = {}  # status id -> (party, status)
        self.lock = threading.Lock()

    def collections(self, party: str | None) -> list[dict]:
        out = [
            {
                "id": RELEASES,
                "title": "cbm-verify releases",
                "description": "every object of every published release (read-only)",
                "can_read": True,
                "can_write": False,
                "media_types": [STIX],
            }
        ]
        if party:
            out.append(
                {
                    "id": inbox_collection(party),
                    "title": f"{party} submissions",
                    "description": f"what {party} hands in: it enters {party}'s inbox (write-only)",
                    "can_read": False,
                    "can_write": True,
                    "media_types": [STIX],
                }
            )
        return out

    def answer(self, method: str, path: str, query: dict, party: str | None, body: bytes | None):
        """(status, body, headers) of a request by ``party`` (None: anonymous)."""
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if parts == ["taxii2"] and method == "GET":
            return (
                200,
                {
                    "title": self.title,
                    "description": "confidence-building measures: published releases and party submissions",
                    "default": f"/{API_ROOT}/",
                    "api_roots": [f"/{API_ROOT}/"],
                },
                {},
            )
        if not parts or parts[0] != API_ROOT:
            raise TaxiiError(404, "not found", f"no such resource: /{'/'.join(parts)}/")
        rest = parts[1:]
        if not rest and method == "GET":
            return (
                200,
                {
                    "title": self.title,
                    "versions": [TAXII],
                    "max_content_length": self.max_content_length,
                },
                {},
            )
        if rest == ["collections"] and method == "GET":
            return 200, {"collections": self.collections(party)}, {}
        if len(rest) == 2 and rest[0] == "status" and method == "GET":
            with self.lock:
                owner, status = self.statuses.get(rest[1], (None, None))
            if status is None or owner != party:
                raise TaxiiError(404, "no such status", rest[1])
            return 200, status, {}
        if len(rest) >= 2 and rest[0] == "collections":
            return self._collection(method, rest[1], rest[2:], query, party, body)
        raise TaxiiError(404, "not found", f"no such resource: /{'/'.join(parts)}/")

    def _collection(self, method, collection, rest, query, party, body):
        mine = inbox_collection(party) if party else None
        if collection == RELEASES:
            if method != "GET":
                raise TaxiiError(403, "read-only", "the releases collection cannot be written")
            return self._read(rest, query)
        if collection == mine:
            if rest == [] and method == "GET":
                return 200, self.collections(party)[1], {}
            if rest == ["objects"] and method == "POST":
                if body is None:
                    raise TaxiiError(400, "no envelope", "POST an envelope of STIX objects")
                status = accept_envelope(self.inbox, party, body)
                with self.lock:
                    self.statuses[status["id"]] = (party, status)
                    while len(self.statuses) > KEPT_STATUSES:  # the oldest go first
                        self.statuses.pop(next(iter(self.statuses)))
                return 202, status, {}
            raise TaxiiError(403, "write-only", f"{party} may only add objects here")
        others = {inbox_collection(p) for p in self.parties}
        if collection in others:
            if party is None:
                raise TaxiiError(401, "credentials needed", "a party's collection is its own")
            raise TaxiiError(403, "not yours", f"{party} may write only its own collection")
        raise TaxiiError(404, "no such collection", collection)

    def _read(self, rest, query):
        if rest == []:
            return 200, self.collections(None)[0], {}
        records = self.served.records()
        if rest == ["objects"]:
            chosen = select(records, query)
            shown, more = page(chosen, query)
            return 200, _envelope([r.obj for r in shown], more), _added(shown)
        if rest == ["manifest"]:
            shown, more = page(select(records, query), query)
            rows = [
                {"id": r.id, "date_added": r.added, "version": r.version, "media_type": STIX}
                for r in shown
            ]
            return (
                200,
                {"more": more is not None, "objects": rows} | ({"next": more} if more else {}),
                _added(shown),
            )
        if len(rest) == 2 and rest[0] == "objects":
            shown, more = page(select(records, query, rest[1]), query)
            if not shown:
                raise TaxiiError(404, "no such object", rest[1])
            return 200, _envelope([r.obj for r in shown], more), _added(shown)
        if len(rest) == 3 and rest[0] == "objects" and rest[2] == "versions":
            everything = dict(query) | {"match[version]": ["all"]}
            shown, more = page(select(records, everything, rest[1]), query)
            if not shown:
                raise TaxiiError(404, "no such object", rest[1])
            versions = {"more": more is not None, "versions": [r.version for r in shown]}
            return 200, versions | ({"next": more} if more else {}), _added(shown)
        raise TaxiiError(404, "not found", "/".join(rest))


def _envelope(objects: list[dict], more: str | None) -> dict:
    out = {"more": more is not None}
    if more:
        out["next"] = more
    if objects:
        out["objects"] = objects
    return out


def _added(shown: list[Record]) -> dict:
    if not shown:
        return {}
    added = sorted(r.added for r in shown)
    return {"X-TAXII-Date-Added-First": added[0], "X-TAXII-Date-Added-Last": added[-1]}


def _accepts(header: str | None) -> bool:
    """A request's Accept admits TAXII 2.1 JSON (no header: it does)."""
    if not header:
        return True
    for item in header.split(","):
        kind = item.split(";")[0].strip().lower()
        params = item.replace(" ", "").lower()
        if kind in ("*/*", "application/*"):
            return True
        if kind == "application/taxii+json" and (
            "version=" not in params or "version=2.1" in params
        ):
            return True
    return False


class Handler(BaseHTTPRequestHandler):
    server_version = "cbm-taxii/1"
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a client may go silent, mid-request or between requests

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        if getattr(self.server, "quiet", False):
            return
        super().log_message(format, *args)

    def do_GET(self):  # noqa: N802 - the stdlib's name
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_DELETE(self):  # noqa: N802
        self._handle("DELETE")

    def _handle(self, method: str):
        cbm: Server = self.server.cbm
        try:
            party = self._party(cbm)
            if not _accepts(self.headers.get("Accept")):
                raise TaxiiError(406, "not acceptable", f"this server answers {TAXII}")
            body = None
            if method == "POST":
                kind = (self.headers.get("Content-Type") or "").replace(" ", "").lower()
                if not kind.startswith("application/taxii+json"):
                    raise TaxiiError(415, "unsupported media type", f"POST {TAXII}")
                length = int(self.headers.get("Content-Length") or 0)
                if length > cbm.max_content_length:
                    raise TaxiiError(
                        413,
                        "too large",
                        f"{length:,} bytes; this API root takes at most {cbm.max_content_length:,}",
                    )
                body = self.rfile.read(length)
            url = urlsplit(self.path)
            status, payload, headers = cbm.answer(
                method, url.path, parse_qs(url.query, keep_blank_values=False), party, body
            )
        except TaxiiError as exc:
            status, payload, headers = exc.status, exc.body(), {}
            if exc.status == 401:
                headers = {"WWW-Authenticate": 'Basic realm="cbm-verify TAXII"'}
        except ValueError as exc:
            status, payload, headers = 400, TaxiiError(400, "bad request", str(exc)).body(), {}
        except Exception:  # noqa: BLE001 - logged here; the client gets a TAXII error, no trace
            self.log_error("unexpected error answering %s %s", method, self.path)
            traceback.print_exc()
            error = TaxiiError(500, "internal error", "the server could not answer; see its log")
            status, payload, headers = 500, error.body(), {}
        self._send(status, payload, headers)

    def _party(self, cbm: Server) -> str | None:
        header = self.headers.get("Authorization")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        try:
            user, _, token = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user, token = "", ""
        if (
            scheme.lower() != "basic"
            or user not in cbm.parties
            or not cbm.credentials.check(user, token)
        ):
            raise TaxiiError(401, "wrong credentials", "a party's code and its own credential")
        return user

    def _send(self, status: int, payload: dict, headers: dict):
        data = json.dumps(payload, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", TAXII)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def make_server(
    cbm: Server,
    host: str = "127.0.0.1",
    port: int = 8766,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    quiet: bool = False,
    client_seconds: float = Handler.timeout,
) -> ThreadingHTTPServer:
    """The HTTP (or, with a certificate and key, HTTPS) server; ``serve_forever`` runs it.
    ``client_seconds``: how long a client may stay silent before its connection is closed."""
    handler = type("Handler", (Handler,), {"timeout": client_seconds})
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.cbm = cbm
    httpd.quiet = quiet
    httpd.daemon_threads = True
    if certfile:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    return httpd
