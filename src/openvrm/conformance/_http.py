"""Small HTTP helpers shared by the vendor and agent checks: signed sends and problem documents."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from openvrm.errors import InvalidValue
from openvrm.protocol import messages as m
from openvrm.protocol.httpsig import sign_request
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.records import canonical_json

PROBLEM_TYPE = "application/problem+json"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Sent:
    """A request as sent (so it can be replayed byte for byte) and what came back."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    status: int | None
    content_type: str
    data: bytes
    error: str | None = None

    def json(self) -> Any:
        try:
            return json.loads(self.data)
        except ValueError:
            return None

    def describe(self) -> str:
        if self.error:
            return f"no answer ({self.error})"
        text = self.data[:160].decode("utf-8", "replace").replace("\n", " ")
        return f"HTTP {self.status} {self.content_type or '(no content type)'}: {text}"


def send(client: httpx.Client, method: str, url: str, headers: dict[str, str], body: bytes) -> Sent:
    """Send one request; a transport error is recorded, never raised."""
    try:
        response = client.request(method, url, headers=headers, content=body)
    except (httpx.HTTPError, InvalidValue) as exc:
        return Sent(method, url, headers, body, None, "", b"", f"{type(exc).__name__}: {exc}"[:200])
    content_type = response.headers.get("content-type", "")
    return Sent(method, url, headers, body, response.status_code, content_type, response.content)


def signed_headers(
    method: str,
    url: str,
    body: bytes,
    key: KeyPair,
    *,
    idempotency_key: str | None = None,
    created: datetime | None = None,
) -> dict[str, str]:
    headers = {"Accept": "application/json, application/problem+json"}
    if body or method.upper() != "GET":
        headers["Content-Type"] = "application/json"
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return sign_request(method, url, headers, body, key, created=created)


def send_signed(
    client: httpx.Client,
    method: str,
    url: str,
    body: bytes,
    key: KeyPair,
    *,
    idempotency_key: str | None = None,
    created: datetime | None = None,
) -> Sent:
    if idempotency_key is None and method.upper() != "GET":
        idempotency_key = m.new_uuid()
    headers = signed_headers(method, url, body, key, idempotency_key=idempotency_key, created=created)
    return send(client, method, url, headers, body)


def send_record(client: httpx.Client, url: str, record: dict[str, Any], key: KeyPair, idem: str) -> Sent:
    return send_signed(client, "POST", url, canonical_json(record), key, idempotency_key=idem)


def with_keyid(headers: dict[str, str], signer: KeyPair, claimed: KeyPair) -> dict[str, str]:
    """``headers`` signed by ``signer`` but naming ``claimed`` as the key: a wrong-key signature."""
    out = dict(headers)
    out["Signature-Input"] = out["Signature-Input"].replace(signer.did, claimed.did)
    return out


def problem_error(sent: Sent, statuses: tuple[int, ...] | None = None) -> str | None:
    """Why ``sent`` is not an RFC 9457 problem answer (with one of ``statuses``), or ``None`` if it is."""
    if sent.status is None:
        return sent.describe()
    if statuses is not None and sent.status not in statuses:
        wanted = " or ".join(str(s) for s in statuses)
        return f"expected HTTP {wanted}, got {sent.describe()}"
    if statuses is None and not 400 <= sent.status < 500:
        return f"expected a 4xx problem, got {sent.describe()}"
    if not sent.content_type.lower().startswith(PROBLEM_TYPE):
        return f"HTTP {sent.status} is not {PROBLEM_TYPE} (content type {sent.content_type or 'none'})"
    body = sent.json()
    if not isinstance(body, dict) or not isinstance(body.get("title"), str):
        return f"HTTP {sent.status}: the problem document has no title"
    if body.get("status") not in (None, sent.status):
        return f"the problem document says status {body.get('status')}, the response {sent.status}"
    return None


def padding_body(size: int = MiB + 1) -> bytes:
    """A JSON body just over the 1 MiB request limit."""
    head, tail = b'{"padding":"', b'"}'
    return head + b"a" * (size - len(head) - len(tail)) + tail
