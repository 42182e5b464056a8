import base64
import hashlib
import hmac
import json

import pytest

from openvrm.errors import InvalidValue
from openvrm.protocol.errors import SignatureError
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.records import canonical_json, record_hash, sign_record, verify_record

RECORD = {"term": "service-delivery-only", "version": 1, "parties": ["b", "a"], "amount": "12.50", "é": True}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_canonical_form_follows_rfc8785() -> None:
    assert canonical_json({"b": 2, "a": [1, 1.5e30, "x"]}) == b'{"a":[1,1.5e+30,"x"],"b":2}'
    assert record_hash({"b": 2, "a": 1}) == record_hash({"a": 1, "b": 2})
    assert record_hash({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()


def test_unrepresentable_values_are_invalid() -> None:
    with pytest.raises(InvalidValue):
        canonical_json({"big": 2**60})
    with pytest.raises(InvalidValue):
        canonical_json({"nan": float("nan")})


def test_sign_and_verify_round_trip() -> None:
    key = KeyPair.generate()
    token = sign_record(RECORD, key)
    assert verify_record(token, key.public_key) == RECORD
    header = json.loads(_unb64(token.split(".")[0]))
    assert header == {"alg": "Ed25519", "kid": key.did}
    assert _unb64(token.split(".")[1]) == canonical_json(RECORD)


def test_wrong_key_is_refused() -> None:
    token = sign_record(RECORD, KeyPair.generate())
    with pytest.raises(SignatureError):
        verify_record(token, KeyPair.generate().public_key)


def test_tampered_payload_is_refused() -> None:
    key = KeyPair.generate()
    header, _, signature = sign_record(RECORD, key).split(".")
    forged = canonical_json({**RECORD, "version": 2})
    with pytest.raises(SignatureError):
        verify_record(f"{header}.{_b64(forged)}.{signature}", key.public_key)


def test_alg_none_is_refused() -> None:
    key = KeyPair.generate()
    token = _b64(b'{"alg":"none"}') + "." + _b64(canonical_json(RECORD)) + "."
    with pytest.raises(SignatureError):
        verify_record(token, key.public_key)


def test_hmac_with_public_key_as_secret_is_refused() -> None:
    key = KeyPair.generate()
    signing_input = _b64(b'{"alg":"HS256"}') + "." + _b64(canonical_json(RECORD))
    mac = hmac.new(key.public_bytes, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(SignatureError):
        verify_record(f"{signing_input}.{_b64(mac)}", key.public_key)


def test_non_canonical_or_non_object_payloads_are_refused() -> None:
    key = KeyPair.generate()

    def signed(header: bytes, payload: bytes) -> str:
        signing_input = f"{_b64(header)}.{_b64(payload)}"
        return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"

    good_header = b'{"alg":"Ed25519"}'
    assert verify_record(signed(good_header, b'{"a":1}'), key.public_key) == {"a": 1}
    with pytest.raises(SignatureError, match="canonical"):
        verify_record(signed(good_header, b'{ "a": 1 }'), key.public_key)
    with pytest.raises(SignatureError, match="object"):
        verify_record(signed(good_header, b"[1]"), key.public_key)
    with pytest.raises(SignatureError, match="unexpected parameters"):
        verify_record(signed(b'{"alg":"Ed25519","jku":"https://evil.example"}', b'{"a":1}'), key.public_key)


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "...."])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(SignatureError):
        verify_record(token, KeyPair.generate().public_key)


def test_signature_error_is_a_401_core_error() -> None:
    from openvrm.errors import OpenVRMError

    assert issubclass(SignatureError, OpenVRMError)
    assert SignatureError.status == 401
