"""Real local servers that receive alerts: an HTTP server for webhooks, aiosmtpd for e-mail."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from email import message_from_bytes
from email.message import Message

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhookServer:
    """Records every POST (headers, body, arrival time); answers ``statuses`` in turn, then 200."""

    def __init__(self, statuses: list[int] | None = None):
        self.requests: list[dict] = []
        self.statuses = list(statuses or [])
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's hook
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.requests.append(
                    {
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                        "at": time.monotonic(),  # when it arrived (benchmarks/daemon.py)
                    }
                )
                status = server.statuses.pop(0) if server.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def payloads(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class SmtpServer:
    """aiosmtpd on a free loopback port; ``messages`` are the parsed e-mails received."""

    def __init__(self):
        self.messages: list[Message] = []
        self.envelopes: list = []
        server = self

        class Handler:
            async def handle_DATA(self, smtp, session, envelope):  # noqa: N802 - aiosmtpd's hook
                server.envelopes.append(envelope)
                server.messages.append(message_from_bytes(envelope.content))
                return "250 Message accepted for delivery"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()
