"""Schemathesis fuzzing of the OpenAPI surface of the person's server and of the vendor kit, in-process.

Every generated request must get a response that is not a 5xx (schemathesis' ``not_a_server_error``) and
every 4xx must be an RFC 9457 ``application/problem+json`` document. The owner API is called with an API
token; the vendor-facing ``/vrm/p/...`` and vendor kit endpoints get whatever the generator makes (they must
refuse it cleanly). Excluded, and why, in ``EXCLUDED``.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from openvrm.config import Settings
from openvrm.server.app import create_app
from openvrm.vault.core import Vault
from openvrm.vendor.app import create_vendor_app
from openvrm.vendor.config import VendorConfig
from tests.conftest import PASSPHRASE, fast_kdf

EXAMPLES_PER_OPERATION = 6
EXAMPLES_PER_PROTOCOL_OPERATION = 25
PROBLEM = "application/problem+json"

EXCLUDED: dict[str, str] = {
    # They reach out to hosts named in the request (a vendor URL, an SMTP server): fuzzing must not
    # make outbound connections, and the SSRF guard has its own tests (tests/net).
    "POST /api/v1/connections": "connects to the vendor URL it is given",
    "PUT /api/v1/mail/settings": "stores an SMTP server that the outbox would then contact",
    "POST /api/v1/outbox/send": "sends mail through the configured SMTP server",
    "POST /api/v1/outbox/{message_id}/retry": "sends mail through the configured SMTP server",
    # Multipart file uploads: the importers parse PDFs and e-invoices; random multipart bodies mostly test
    # the form parser, and each import is slow. They are covered by tests/documents and tests/server.
    "POST /api/v1/documents": "multipart file upload",
    "POST /api/v1/documents/import": "multipart file upload",
    "POST /api/v1/rights/{request_id}/answer": "multipart file upload",
    # Would end the session or token the fuzzer itself uses.
    "DELETE /api/v1/session": "logs the fuzzer out",
    "DELETE /api/v1/tokens/{token_id}": "may revoke the fuzzer's own token",
}


def _operations(schema: Any) -> list[Any]:
    found = []
    for result in schema.get_all_operations():
        op = result.ok()
        if f"{op.method.upper()} {op.path}" not in EXCLUDED:
            found.append(op)
    return found


def _fuzz(operations: list[Any], headers: dict[str, str], examples: int, protocol_examples: int) -> list[str]:
    """Run every operation; return one line per failure (operation, status, request) for the message."""
    failures: list[str] = []
    for op in operations:
        n = protocol_examples if op.path.startswith(("/vrm/", "/.well-known")) else examples
        failure = _fuzz_operation(op, headers, n)
        if failure:
            failures.append(failure)
    return failures


def _content_type(response: Any) -> str:
    value = response.headers.get("content-type", [""])
    return str(value[0] if isinstance(value, list) else value)


def _fuzz_operation(op: Any, headers: dict[str, str], examples: int) -> str | None:
    label = f"{op.method.upper()} {op.path}"
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    strategy = st.one_of(*(op.as_strategy(generation_mode=mode) for mode in modes))
    seen: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # report the first failing input, unshrunk
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        try:
            response = case.call(headers=headers)
        except Exception as exc:  # the test client re-raises what the app did not handle: a 500
            trace = "".join(traceback.format_exception(exc)[-6:])
            seen.append(f"{label}: {type(exc).__name__}: {exc} for {case.as_curl_command()}\n{trace}")
            raise
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except Exception as exc:
            seen.append(f"{label}: HTTP {response.status_code}: {str(exc)[:600]}")
            raise
        content_type = _content_type(response)
        if 400 <= response.status_code < 500 and not content_type.startswith(PROBLEM):
            text = response.text[:200] if hasattr(response, "text") else ""
            seen.append(f"{label}: HTTP {response.status_code} is {content_type!r}, not {PROBLEM}: {text}")
            raise AssertionError(seen[-1])

    try:
        run()
    except Exception as exc:
        return seen[-1] if seen else f"{label}: {type(exc).__name__}: {str(exc)[:600]}"
    return None


@pytest.fixture
def person_app(tmp_path: Path) -> Iterator[tuple[FastAPI, str]]:
    """The person's server on a fresh vault, and an API token for its owner API."""
    app_settings = Settings.resolve(tmp_path / "home")
    with Vault.open(app_settings, create=True) as vault:
        vault.create(PASSPHRASE, kdf=fast_kdf())
    app = create_app(app_settings)
    client = asgi.get_client(app)
    r = client.post("http://testserver/api/v1/session", json={"passphrase": PASSPHRASE})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf_token"]
    r = client.post("http://testserver/api/v1/tokens", json={"name": "fuzz"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    yield app, r.json()["token"]


def test_person_server_never_fails_with_5xx(person_app: tuple[FastAPI, str]) -> None:
    app, token = person_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = _operations(schema)
    assert len(operations) > 60
    failures = _fuzz(
        operations,
        {"Authorization": f"Bearer {token}"},
        EXAMPLES_PER_OPERATION,
        EXAMPLES_PER_PROTOCOL_OPERATION,
    )
    assert not failures, "\n".join(failures)


def test_vendor_kit_never_fails_with_5xx(tmp_path: Path) -> None:
    config = VendorConfig(name="Fuzz Vendor", base_url="http://localhost", store_dir=tmp_path / "vendor")
    app = create_vendor_app(config)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = _operations(schema)
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "GET /.well-known/vrm",
        "POST /vrm/relationship",
        "POST /vrm/ledger",
    }
    failures = _fuzz(operations, {}, 20, 60)
    app.state.kit.close()
    assert not failures, "\n".join(failures)


def test_the_fuzzer_reports_a_5xx_and_a_bare_4xx() -> None:
    """The harness itself can fail: a route that crashes and one with a non-problem 4xx are both named."""
    app = FastAPI()

    @app.get("/crash")
    async def crash() -> dict[str, int]:
        raise RuntimeError("boom")

    @app.get("/bare")
    async def bare() -> Any:
        from starlette.responses import PlainTextResponse

        return PlainTextResponse("no", status_code=418)

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = _fuzz(_operations(schema), {}, 3, 3)
    assert len(failures) == 2
    assert failures[0].startswith("GET /crash: ")
    assert "HTTP 500" in failures[0] or "RuntimeError: boom" in failures[0]
    assert failures[1].startswith("GET /bare: HTTP 418")
