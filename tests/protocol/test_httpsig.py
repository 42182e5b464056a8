from datetime import UTC, datetime, timedelta

import httpx
import pytest

from openvrm.errors import InvalidValue
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.httpsig import (
    MemoryNonceStore,
    RequestVerifier,
    content_digest,
    did_key_resolver,
    known_keys,
    sign_httpx_request,
    sign_request,
    verify_httpx_request,
)
from openvrm.protocol.identity import KeyPair

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
URL = "https://vendor.example/vrm/v1/ledger?since=3"
BODY = b'{"kind":"status"}'
IDEM = "8f14e45f-ceea-4e7a-9b1e-5c2d3a4b6c7d"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _verifier(clock: Clock | None = None, **options: object) -> RequestVerifier:
    return RequestVerifier(did_key_resolver, MemoryNonceStore(), clock=clock or Clock(NOW), **options)  # type: ignore[arg-type]


def _signed(
    key: KeyPair, *, created: datetime = NOW, nonce: str = "n-1", body: bytes = BODY
) -> dict[str, str]:
    return sign_request(
        "POST",
        URL,
        {"Content-Type": "application/json", "Idempotency-Key": IDEM},
        body,
        key,
        created=created,
        nonce=nonce,
    )


def test_good_signature_verifies() -> None:
    key = KeyPair.generate()
    headers = _signed(key)
    assert headers["Content-Digest"] == content_digest(BODY)
    result = _verifier().verify("POST", URL, headers, BODY)
    assert (result.keyid, result.created, result.nonce) == (key.did, NOW, "n-1")


def test_content_digest_is_rfc9530_sha256() -> None:
    assert content_digest(b"") == "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"


def test_known_keys_resolver() -> None:
    key = KeyPair.generate()
    verifier = RequestVerifier(known_keys({key.did: key.public_key}), MemoryNonceStore(), clock=Clock(NOW))
    assert verifier.verify("POST", URL, _signed(key), BODY).keyid == key.did
    stranger = KeyPair.generate()
    with pytest.raises(SignatureError, match="not known"):
        verifier.verify("POST", URL, _signed(stranger), BODY)


def test_unsigned_is_refused() -> None:
    with pytest.raises(SignatureError, match="not signed"):
        _verifier().verify("POST", URL, {"Content-Digest": content_digest(BODY)}, BODY)


def test_wrong_key_is_refused() -> None:
    key, other = KeyPair.generate(), KeyPair.generate()
    headers = _signed(key)
    headers["Signature-Input"] = headers["Signature-Input"].replace(key.did, other.did)
    with pytest.raises(SignatureError, match="refused"):
        _verifier().verify("POST", URL, headers, BODY)


def test_altered_body_is_refused() -> None:
    with pytest.raises(SignatureError, match="Content-Digest"):
        _verifier().verify("POST", URL, _signed(KeyPair.generate()), b'{"kind":"data"}')


def test_altered_path_and_method_are_refused() -> None:
    headers = _signed(KeyPair.generate())
    with pytest.raises(SignatureError, match="refused"):
        _verifier().verify("POST", URL.replace("/ledger", "/grants"), headers, BODY)
    with pytest.raises(SignatureError, match="refused"):
        _verifier().verify("PUT", URL, headers, BODY)


def test_missing_component_is_refused() -> None:
    key = KeyPair.generate()
    headers = _signed(key)
    # Re-sign without @path by editing the covered list: the signature no longer matches, and even a
    # signature made over fewer components would fail the required-components rule.
    headers["Signature-Input"] = headers["Signature-Input"].replace(' "@path"', "")
    with pytest.raises(SignatureError, match="@path|refused"):
        _verifier().verify("POST", URL, headers, BODY)


def test_signature_over_fewer_components_is_refused() -> None:
    from http_message_signatures import HTTPMessageSigner, algorithms

    from openvrm.protocol.httpsig import SIGNATURE_LABEL, SIGNATURE_TAG, _Message, _SignerKeys

    key = KeyPair.generate()
    message = _Message("POST", URL, {"Content-Digest": content_digest(BODY), "Idempotency-Key": IDEM})
    HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_SignerKeys(key)).sign(
        message,
        key_id=key.did,
        created=NOW,
        nonce="n-x",
        label=SIGNATURE_LABEL,
        tag=SIGNATURE_TAG,
        covered_component_ids=("@method", "@authority", "content-digest"),
        use_existing_digest=True,
    )
    with pytest.raises(SignatureError, match="not covered"):
        _verifier().verify("POST", URL, message.headers, BODY)


def _signed_with(
    digest: str, covered: tuple[str, ...], *, nonce: str = "n-d"
) -> tuple[KeyPair, dict[str, str]]:
    """A request signed by the library itself with the given Content-Digest field and coverage."""
    from http_message_signatures import HTTPMessageSigner, algorithms

    from openvrm.protocol.httpsig import SIGNATURE_LABEL, SIGNATURE_TAG, _Message, _SignerKeys

    key = KeyPair.generate()
    message = _Message("POST", URL, {"Content-Digest": digest, "Idempotency-Key": IDEM})
    HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_SignerKeys(key)).sign(
        message,
        key_id=key.did,
        created=NOW,
        nonce=nonce,
        label=SIGNATURE_LABEL,
        tag=SIGNATURE_TAG,
        covered_component_ids=covered,
        use_existing_digest=True,
    )
    return key, message.headers


ALL = ("@method", "@target-uri", "@authority", "@path", "content-digest", "idempotency-key")


def test_every_member_of_the_signed_content_digest_must_match_the_body() -> None:
    """The digest is checked through the covered field alone: a second member that does not match the
    body (here a sha-512 of another body) still gets the request refused."""
    import base64
    import hashlib

    wrong = base64.b64encode(hashlib.sha512(b"another body").digest()).decode()
    _, headers = _signed_with(f"{content_digest(BODY)}, sha-512=:{wrong}:", ALL)
    with pytest.raises(SignatureError, match="Content-Digest"):
        _verifier().verify("POST", URL, headers, BODY)
    right = base64.b64encode(hashlib.sha512(BODY).digest()).decode()
    key, headers = _signed_with(f"{content_digest(BODY)}, sha-512=:{right}:", ALL, nonce="n-e")
    assert _verifier().verify("POST", URL, headers, BODY).keyid == key.did


def test_a_digest_covered_only_with_parameters_does_not_count() -> None:
    """``"content-digest";sf`` covers the field re-serialized, not the plain component the protocol needs."""
    covered = ("@method", "@target-uri", "@authority", "@path", '"content-digest";sf', "idempotency-key")
    _, headers = _signed_with(content_digest(BODY), covered)
    with pytest.raises(SignatureError, match="not covered"):
        _verifier().verify("POST", URL, headers, BODY)


@pytest.mark.parametrize("left_out", ALL)
def test_a_signature_must_cover_every_required_component(left_out: str) -> None:
    """A valid signature that leaves out any one required component is refused, whatever the order of the
    rest; a field covered only with a parameter (``;bs``) does not count either."""
    rest = tuple(reversed([name for name in ALL if name != left_out]))
    _, headers = _signed_with(content_digest(BODY), rest, nonce=f"n-{left_out}")
    with pytest.raises(SignatureError, match="not covered"):
        _verifier().verify("POST", URL, headers, BODY)
    if not left_out.startswith("@"):
        with_param = (*rest, f'"{left_out}";bs')
        _, headers = _signed_with(content_digest(BODY), with_param, nonce=f"n-{left_out}-bs")
        with pytest.raises(SignatureError, match="not covered"):
            _verifier().verify("POST", URL, headers, BODY)


def test_coverage_in_any_order_with_extra_components_is_accepted() -> None:
    covered = (*reversed(ALL), "@scheme")
    key, headers = _signed_with(content_digest(BODY), covered, nonce="n-order")
    assert _verifier().verify("POST", URL, headers, BODY).keyid == key.did


def test_an_empty_body_needs_its_digest_too() -> None:
    key = KeyPair.generate()
    headers = sign_request("GET", URL, {}, b"", key, created=NOW, nonce="n-g")
    assert _verifier().verify("GET", URL, headers, b"").keyid == key.did
    with pytest.raises(SignatureError, match="Content-Digest"):
        _verifier().verify("GET", URL, sign_request("GET", URL, {}, b"", key, created=NOW, nonce="n-h"), b"x")


def test_expired_is_refused() -> None:
    headers = _signed(KeyPair.generate(), created=NOW - timedelta(seconds=301))
    with pytest.raises(SignatureError, match="expired"):
        _verifier().verify("POST", URL, headers, BODY)


def test_within_window_is_accepted() -> None:
    headers = _signed(KeyPair.generate(), created=NOW - timedelta(seconds=299))
    assert _verifier().verify("POST", URL, headers, BODY).nonce == "n-1"


def test_future_dated_is_refused() -> None:
    headers = _signed(KeyPair.generate(), created=NOW + timedelta(seconds=60))
    with pytest.raises(SignatureError, match="future"):
        _verifier().verify("POST", URL, headers, BODY)


def test_replayed_nonce_is_refused_within_window_only() -> None:
    key = KeyPair.generate()
    clock = Clock(NOW)
    verifier = _verifier(clock)
    verifier.verify("POST", URL, _signed(key), BODY)
    with pytest.raises(SignatureError, match="replayed"):
        verifier.verify("POST", URL, _signed(key), BODY)
    # Still refused one window later (nonces are kept for twice the window)...
    clock.now = NOW + timedelta(seconds=400)
    with pytest.raises(SignatureError, match="replayed"):
        verifier.verify("POST", URL, _signed(key, created=clock.now), BODY)
    # ...and forgotten after that, when an old signature is long expired anyway.
    clock.now = NOW + timedelta(seconds=700)
    assert verifier.verify("POST", URL, _signed(key, created=clock.now), BODY).nonce == "n-1"


def test_missing_nonce_is_refused() -> None:
    key = KeyPair.generate()
    headers = _signed(key)
    headers["Signature-Input"] = headers["Signature-Input"].replace(';nonce="n-1"', "")
    with pytest.raises(SignatureError):
        _verifier().verify("POST", URL, headers, BODY)


def test_oversized_body_is_refused() -> None:
    body = b"x" * 2048
    headers = _signed(KeyPair.generate(), body=body)
    with pytest.raises(SignatureError, match="larger than 1024"):
        _verifier(max_body_bytes=1024).verify("POST", URL, headers, body)


def test_httpx_adapters() -> None:
    key = KeyPair.generate()
    request = httpx.Request(
        "POST", URL, content=BODY, headers={"Content-Type": "application/json", "Idempotency-Key": IDEM}
    )
    sign_httpx_request(request, key, created=NOW, nonce="hx")
    assert verify_httpx_request(request, _verifier()).keyid == key.did


def test_a_write_must_carry_and_cover_an_idempotency_key() -> None:
    key = KeyPair.generate()
    with pytest.raises(InvalidValue, match="Idempotency-Key"):
        sign_request("POST", URL, {}, BODY, key, created=NOW)
    headers = _signed(key)
    assert "idempotency-key" in headers["Signature-Input"]
    changed = dict(headers) | {"Idempotency-Key": "11111111-2222-4333-8444-555555555555"}
    with pytest.raises(SignatureError):
        _verifier().verify("POST", URL, changed, BODY)
    missing = {k: v for k, v in headers.items() if k != "Idempotency-Key"}
    with pytest.raises(SignatureError, match="Idempotency-Key"):
        _verifier().verify("POST", URL, missing, BODY)
    # A read needs none.
    get = sign_request("GET", URL, {}, b"", key, created=NOW)
    assert _verifier().verify("GET", URL, get, b"").keyid == key.did
