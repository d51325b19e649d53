"""A local HTTP server standing in for Stripe's API: answers customers, checkout and portal sessions, and
keeps what it received."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class FakeStripe:
    """What the stand-in for Stripe's API received: (path, form fields) per request."""

    base: str = ""
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def to(self, path: str) -> list[dict[str, str]]:
        return [form for got, form in self.requests if got == path]


def _handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            form = {key: values[-1] for key, values in parse_qs(body).items()}
            fake.requests.append((self.path, form))
            n = len(fake.requests)
            objects: dict[str, dict[str, Any]] = {
                "/v1/customers": {"id": f"cus_test_{n}", "object": "customer", "email": form.get("email")},
                "/v1/checkout/sessions": {
                    "id": f"cs_test_{n}", "object": "checkout.session", "url": f"https://checkout.stripe.test/{n}"
                },
                "/v1/billing_portal/sessions": {
                    "id": f"bps_test_{n}", "object": "billing_portal.session", "url": f"https://portal.stripe.test/{n}"
                },
            }  # fmt: skip
            found = objects.get(self.path)
            payload = json.dumps(found or {"error": {"type": "invalid_request_error", "message": "no such route"}})
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serving_fake_stripe() -> Iterator[FakeStripe]:
    """The Stripe stand-in on a local port (its address in ``base``) while the block runs."""
    fake = FakeStripe()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
