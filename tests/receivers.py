"""Local receivers that notification channels deliver to in tests: an HTTP server recording every JSON
POST (answering a chosen status), and an SMTP server (aiosmtpd) that requires STARTTLS with a test CA
(trustme) and a login, recording every message."""

from __future__ import annotations

import email
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from stream.cli.services import free_port


@dataclass
class Received:
    """One request: when it arrived (monotonic), its path, headers and parsed JSON body."""

    at: float
    path: str
    headers: dict[str, str]
    body: Any


class HttpReceiver:
    """A threaded HTTP server on 127.0.0.1 that records POSTs and answers `status` (202 for PagerDuty)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                receiver.requests.append(Received(time.monotonic(), self.path,
                                                  {k.lower(): v for k, v in self.headers.items()},
                                                  orjson.loads(raw) if raw else None))
                self.send_response(receiver.status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def bodies(self) -> list[Any]:
        return [r.body for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class _Handler:
    messages: list[tuple[Envelope, Message]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append((envelope, email.message_from_bytes(content)))
        return "250 OK"


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1 requiring STARTTLS (certificate of a trustme CA written to `ca_file`) and
    AUTH with `user` / `password`."""

    def __init__(self, directory: Path, user: str = "alerts", password: str = "s3cret-smtp") -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self.ca_file = directory / "smtp-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.user, self.password = user, password
        self.handler = _Handler()
        self.port = free_port()

        def authenticate(server: Any, session: Session, envelope: Envelope, mechanism: str,
                         auth_data: Any) -> AuthResult:
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
                and auth_data.password.decode() == password
            return AuthResult(success=ok)

        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, tls_context=context,
                                     require_starttls=True, authenticator=authenticate, auth_required=True)
        self.controller.start()

    @property
    def messages(self) -> list[tuple[Envelope, Message]]:
        return self.handler.messages

    def close(self) -> None:
        self.controller.stop()


def parts(message: Message) -> dict[str, str]:
    """content type → decoded text of the parts of a (multipart) message."""
    out = {}
    for part in message.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            out[part.get_content_type()] = payload.decode() if isinstance(payload, bytes) else str(payload)
    return out
