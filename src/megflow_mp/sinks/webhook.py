"""WebhookSink's destination: an HTTP(S) POST of a JSON array of records per batch.

Accepted: any 2xx answer (anything else, a timeout or a refused connection is a failure, retried).
Headers: ``Content-Type: application/json``, the configured ``headers`` (values ``env:``/``file:``
resolved), and with ``secret`` the signature ``<signature_header>: sha256=<hex HMAC-SHA256 of the
body with the secret>``, which the receiver recomputes over the raw body.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse

import requests

from .config import Secret
from .destination import Destination


class HttpStatusError(RuntimeError):
    pass


class Webhook(Destination):
    kind = "WebhookSink"

    def __init__(self, a, common, node_id: str):
        super().__init__()
        raw = a.string("url", required=True)
        url = a.secret("url").value if raw.startswith(("env:", "file:")) else raw
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise a.error("url", f"not a URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise a.error("url", "expected http://host[:port]/path or https://...")
        if parts.password:
            self.secrets.append(Secret(parts.password))
        if parts.query:
            self.secrets.append(Secret(parts.query))
        self.url = url
        self.shown = f"{parts.scheme}://{parts.hostname}{':' + str(port) if port else ''}{parts.path or '/'}"
        headers = a.get("headers", {}) or {}
        if not isinstance(headers, dict):
            raise a.error("headers", "expected a table of header names to values ('env:NAME' for a secret)")
        self.headers = {"Content-Type": "application/json"}
        for key, value in headers.items():
            secret = a.secret(f"headers.{key}", value) if isinstance(value, str) else None
            if secret is None:
                raise a.error(f"headers.{key}", "expected a string")
            self.secrets.append(secret)
            self.headers[str(key)] = secret.value
        self.key = a.secret("secret")
        self.secrets.append(self.key)
        self.sig_header = a.string("signature_header", "X-Megflow-Signature")
        self.timeout = common.timeout
        self.session = None

    def send(self, records, payloads) -> None:
        if self.session is None:
            self.session = requests.Session()
        body = ("[" + ",".join(payloads) + "]").encode("utf-8")
        headers = self.headers
        if self.key:
            headers = {**headers, self.sig_header: "sha256=" + sign(self.key.value, body)}
        r = self.session.post(self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False)
        r.close()
        if not 200 <= r.status_code < 300:
            raise HttpStatusError(f"HTTP {r.status_code}")

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def sign(key: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body`` with ``key`` (what the signature header carries after ``sha256=``)."""
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()
