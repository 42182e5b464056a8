"""The owner API in-process, on SQLite and PostgreSQL: auth, CSRF, tokens, problems, documents."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from openvrm.config import Settings
from openvrm.server.app import create_app
from openvrm.sharing.service import SharingService
from openvrm.vault.core import Vault
from openvrm.vendors.service import VendorService
from tests.conftest import PASSPHRASE
from tests.server.conftest import assert_problem, login, serve, state

pytestmark = pytest.mark.anyio


async def test_health_reports_locked_then_unlocked(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["vault"] == "locked"
    assert body["version"]
    await login(client)
    assert (await client.get("/healthz")).json()["vault"] == "unlocked"


async def test_absent_vault_health_and_login(sqlite_settings: Settings) -> None:
    async with serve(create_app(sqlite_settings)) as client:
        assert (await client.get("/healthz")).json()["vault"] == "absent"
        r = await client.post("/api/v1/session", json={"passphrase": PASSPHRASE})
        body = assert_problem(r, 404, "vault-not-found")
        assert "vrm init" in str(body["detail"])


async def test_openapi_documents_the_api(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    paths = spec["paths"]
    for path in (
        "/api/v1/session",
        "/api/v1/vendors",
        "/api/v1/vendors/{vendor_id}",
        "/api/v1/documents",
        "/api/v1/documents/{document_id}/content",
        "/api/v1/profile/{field}",
        "/api/v1/tokens",
        "/api/v1/summary",
        "/healthz",
    ):
        assert path in paths, path
    assert paths["/api/v1/vendors"]["post"]["summary"] == "Add a vendor"
    assert all(op.get("summary") for item in paths.values() for op in item.values())
    upload = paths["/api/v1/documents"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    assert "/login" not in paths and "/" not in paths  # pages stay out of the API description


async def test_wrong_passphrase_is_a_401_problem(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/session", json={"passphrase": "not the passphrase"})
    body = assert_problem(r, 401, "wrong-passphrase")
    assert "not the passphrase" not in r.text
    assert body.get("instance", "").startswith("urn:uuid:")
    assert "openvrm_session" not in r.headers.get("set-cookie", "")


async def test_login_failures_are_throttled(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert_problem(await client.post("/api/v1/session", json={"passphrase": "wrong wrong"}), 401)
    r = await client.post("/api/v1/session", json={"passphrase": PASSPHRASE})
    assert_problem(r, 429, "too-many-attempts")
    assert int(r.headers["retry-after"]) > 0


async def test_session_cookie_flags(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/session", json={"passphrase": PASSPHRASE})
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith("openvrm_session=")
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain http here; https requests get Secure


async def test_secure_cookie_over_https(app: FastAPI) -> None:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            r = await client.post("/api/v1/session", json={"passphrase": PASSPHRASE})
            assert "secure" in r.headers["set-cookie"].lower()


async def test_api_needs_authentication(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/summary")
    assert_problem(r, 401, "not-authenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_problem(await client.get("/api/v1/vendors", headers={"Authorization": "Basic abc"}), 401)
    assert_problem(await client.get("/api/v1/vendors", headers={"Authorization": "Bearer vrm_nope"}), 401)


async def test_csrf_token_required_for_cookie_changes(client: httpx.AsyncClient) -> None:
    csrf = await login(client)
    assert_problem(await client.post("/api/v1/vendors", json={"name": "Acme"}), 403, "csrf-failed")
    r = await client.post("/api/v1/vendors", json={"name": "Acme"}, headers={"X-CSRF-Token": csrf + "x"})
    assert_problem(r, 403, "csrf-failed")
    r = await client.put(
        "/api/v1/profile/email", json={"value": "a@example.org"}, headers={"X-CSRF-Token": ""}
    )
    assert_problem(r, 403, "csrf-failed")
    assert (await client.get("/api/v1/vendors")).json() == {"vendors": []}  # reads need no token
    r = await client.post("/api/v1/vendors", json={"name": "Acme"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201


async def test_logout_locks_the_vault(app: FastAPI, client: httpx.AsyncClient) -> None:
    csrf = await login(client)
    [session] = list(state(app).sessions._sessions.values())
    assert not session.unlocked.locked
    assert_problem(await client.delete("/api/v1/session"), 403, "csrf-failed")
    r = await client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204
    assert session.unlocked.locked
    assert state(app).sessions.active_count() == 0
    assert_problem(await client.get("/api/v1/summary"), 401)
    assert (await client.get("/healthz")).json()["vault"] == "locked"


async def test_bearer_token_works_until_revoked(app: FastAPI, client: httpx.AsyncClient) -> None:
    csrf = await login(client)
    r = await client.post("/api/v1/tokens", json={"name": "backup script"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201
    token, token_id = r.json()["token"], r.json()["id"]
    assert token.startswith("vrm_")
    listed = (await client.get("/api/v1/tokens")).json()["tokens"]
    assert [t["id"] for t in listed] == [token_id] and "token" not in listed[0]

    transport = httpx.ASGITransport(app=app)
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=auth) as bot:
        assert (await bot.get("/api/v1/summary")).json()["vendors"] == 0
        r = await bot.post("/api/v1/vendors", json={"name": "Bot Vendor"})  # no CSRF needed
        assert r.status_code == 201
        assert_problem(await bot.get("/api/v1/tokens"), 403, "session-required")
        assert_problem(await bot.delete("/api/v1/session"), 403, "session-required")

        r = await client.delete(f"/api/v1/tokens/{token_id}", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 204
        assert_problem(await bot.get("/api/v1/summary"), 401, "not-authenticated")
    assert_problem(await client.delete(f"/api/v1/tokens/{token_id}", headers={"X-CSRF-Token": csrf}), 404)


async def test_unknown_route_and_validation_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/no/such/page"), 404, "not-found")
    assert_problem(await client.get("/api/v1/nothing"), 404, "not-found")
    assert_problem(await client.patch("/healthz"), 405, "method-not-allowed")
    r = await client.post("/api/v1/session", json={"pass": "s3cret-not-echoed"})
    body = assert_problem(r, 422, "validation-error")
    names = [p["name"] for p in body["invalid_params"]]
    assert "body.passphrase" in names and "body.pass" in names
    assert "s3cret-not-echoed" not in r.text
    csrf = await login(client)
    r = await client.put("/api/v1/profile/email", json={}, headers={"X-CSRF-Token": csrf})
    body = assert_problem(r, 422, "validation-error")
    assert [p["name"] for p in body["invalid_params"]] == ["body.value"]
    r = await client.put(
        "/api/v1/profile/email", json={"value": "not an address"}, headers={"X-CSRF-Token": csrf}
    )
    assert_problem(r, 422, "invalid-value")
    assert_problem(await client.get("/api/v1/vendors/0123"), 404, "not-found")


async def test_profile_round_trip(client: httpx.AsyncClient) -> None:
    h = {"X-CSRF-Token": await login(client)}
    r = await client.put("/api/v1/profile/email", json={"value": "ada@example.org"}, headers=h)
    assert r.status_code == 200 and r.json()["value"] == "ada@example.org"
    await client.put("/api/v1/profile/email", json={"value": "ada@example.net"}, headers=h)
    address = {"street": "1 rue de la Paix", "city": "Paris", "country": "fr"}
    r = await client.put("/api/v1/profile/address.home", json={"value": address}, headers=h)
    assert r.json()["value"]["country"] == "FR"
    fields = (await client.get("/api/v1/profile")).json()["fields"]
    assert fields["email"] == "ada@example.net" and fields["address.home"]["city"] == "Paris"
    history = (await client.get("/api/v1/profile/history", params={"field": "email"})).json()["changes"]
    assert [c["value"] for c in history] == ["ada@example.org", "ada@example.net"]
    assert (await client.delete("/api/v1/profile/email", headers=h)).json()["action"] == "unset"
    assert "email" not in (await client.get("/api/v1/profile")).json()["fields"]
    assert_problem(await client.delete("/api/v1/profile/email", headers=h), 404)


async def test_vendors_relationships_and_summary(client: httpx.AsyncClient) -> None:
    h = {"X-CSRF-Token": await login(client)}
    r = await client.post(
        "/api/v1/vendors", json={"name": "Fnac", "domains": ["fnac.com"], "country": "fr"}, headers=h
    )
    vendor = r.json()
    assert vendor["country"] == "FR"
    r = await client.post(
        f"/api/v1/vendors/{vendor['id']}/relationships",
        json={"customer_number": "C-42", "since": "2020-01-31"},
        headers=h,
    )
    assert r.status_code == 201 and r.json()["since"] == "2020-01-31"
    assert_problem(
        await client.post("/api/v1/vendors/ffff/relationships", json={}, headers=h), 404, "not-found"
    )
    assert_problem(
        await client.post(f"/api/v1/vendors/{vendor['id']}/relationships", json={"status": "odd"}, headers=h),
        422,
        "invalid-value",
    )
    detail = (await client.get(f"/api/v1/vendors/{vendor['id']}")).json()
    assert detail["name"] == "Fnac" and len(detail["relationships"]) == 1
    rels = (await client.get("/api/v1/relationships", params={"vendor_id": vendor["id"]})).json()
    assert len(rels["relationships"]) == 1
    await client.put("/api/v1/profile/name", json={"value": "Ada Lovelace"}, headers=h)
    summary = (await client.get("/api/v1/summary")).json()
    assert summary == {
        "vendors": 1,
        "relationships": 1,
        "documents": 0,
        "profile_fields": 1,
        "shares": 0,
        "inbox": 0,
    }


async def test_shares_and_inbox(app: FastAPI, client: httpx.AsyncClient) -> None:
    await login(client)
    [session] = list(state(app).sessions._sessions.values())
    vendor = VendorService(session.unlocked).add("Shop")
    rel = VendorService(session.unlocked).relate(vendor.id)
    SharingService(session.unlocked).share(rel.id, "email", purpose="delivery notices")
    vault = state(app).vault
    assert isinstance(vault, Vault)
    vault.deposit({"type": "receipt", "total": "12.50"})
    shares = (await client.get("/api/v1/shares")).json()["shares"]
    assert [s["field"] for s in shares] == ["email"]
    items = (await client.get("/api/v1/inbox")).json()["items"]
    assert items[0]["item"] == {"type": "receipt", "total": "12.50"}
    summary = (await client.get("/api/v1/summary")).json()
    assert summary["shares"] == 1 and summary["inbox"] == 1


async def test_document_upload_and_download_round_trip(client: httpx.AsyncClient) -> None:
    h = {"X-CSRF-Token": await login(client)}
    vendor = (await client.post("/api/v1/vendors", json={"name": "EDF"}, headers=h)).json()
    data = bytes(range(256)) * 40
    r = await client.post(
        "/api/v1/documents",
        files={"file": ("facture été.pdf", data, "application/pdf")},
        data={"vendor_id": vendor["id"], "kind": "invoice", "title": "Electricity, June"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    doc = r.json()["document"]
    assert doc["size"] == len(data) and doc["media_type"] == "application/pdf" and doc["kind"] == "invoice"
    assert doc["vendor_id"] == vendor["id"] and r.json()["duplicate_of"] is None
    assert (await client.get(f"/api/v1/documents/{doc['id']}")).json()["title"] == "Electricity, June"
    listed = (await client.get("/api/v1/documents", params={"vendor_id": vendor["id"]})).json()["documents"]
    assert [d["id"] for d in listed] == [doc["id"]]

    r = await client.get(f"/api/v1/documents/{doc['id']}/content")
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["x-content-type-options"] == "nosniff"
    disposition = r.headers["content-disposition"]
    assert (
        disposition.startswith("attachment;")
        and "filename*=UTF-8''facture%20%C3%A9t%C3%A9.pdf" in disposition
    )

    r = await client.post("/api/v1/documents", files={"file": ("x.bin", data)}, headers=h)
    assert r.json()["duplicate_of"] == doc["id"]
    assert_problem(await client.post("/api/v1/documents", data={"title": "no file"}, headers=h), 422)
    r = await client.post(
        "/api/v1/documents", files={"file": ("k.txt", b"k")}, data={"kind": "bogus"}, headers=h
    )
    assert_problem(r, 422, "invalid-value")
    assert_problem(await client.get("/api/v1/documents/abc/content"), 404)


async def test_upload_over_the_limit_is_413(app: FastAPI, client: httpx.AsyncClient) -> None:
    h = {"X-CSRF-Token": await login(client)}
    state(app).max_upload_bytes = 1024
    # Exactly the limit is fine.
    r = await client.post("/api/v1/documents", files={"file": ("ok.bin", b"a" * 1024)}, headers=h)
    assert r.status_code == 201
    # One byte more is refused, whatever the framing.
    r = await client.post("/api/v1/documents", files={"file": ("big.bin", b"b" * 1025)}, headers=h)
    assert_problem(r, 413, "payload-too-large")
    # A declared length far over the limit is refused before the body is read.
    r = await client.post(
        "/api/v1/documents",
        content=b"x" * 10,
        headers={**h, "Content-Type": "multipart/form-data; boundary=zz", "Content-Length": str(10**9)},
    )
    assert_problem(r, 413, "payload-too-large")

    # A streamed (chunked) body without a length is cut off as soon as it passes the limit.
    sent = 0

    async def chunks() -> object:
        nonlocal sent
        yield b'--zz\r\nContent-Disposition: form-data; name="file"; filename="s.bin"\r\n\r\n'
        for _ in range(10_000):
            sent += 1
            yield b"c" * 1024

    r = await client.post(
        "/api/v1/documents",
        content=chunks(),  # type: ignore[arg-type]
        headers={**h, "Content-Type": "multipart/form-data; boundary=zz"},
    )
    assert_problem(r, 413, "payload-too-large")
    assert sent < 10_000  # the server stopped reading long before the end
    documents = (await client.get("/api/v1/documents")).json()["documents"]
    assert [d["filename"] for d in documents] == ["ok.bin"]


async def test_security_headers(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/login", "/api/v1/summary", "/nothing"):
        r = await client.get(path)
        assert r.headers["content-security-policy"].startswith("default-src 'self'")
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-request-id"]
    assert "no-store" in (await client.get("/login")).headers["cache-control"]


async def test_unexpected_errors_are_generic_500(app: FastAPI, client: httpx.AsyncClient) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("Ada Lovelace lives at 12 Secret Lane")

    r = await client.get("/boom")
    body = assert_problem(r, 500, "internal-error")
    assert "Ada" not in r.text and "Secret" not in r.text
    assert str(body["instance"]).endswith(r.headers["x-request-id"])
