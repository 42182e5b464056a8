import base58
import pytest
from cryptography.exceptions import InvalidSignature

from openvrm.errors import InvalidValue
from openvrm.protocol.identity import (
    KeyPair,
    did_from_public_key,
    public_key_from_did,
    raw_public_bytes,
    verify_ed25519,
)

# The Ed25519 example of the W3C did:key method specification (its DID document lists this publicKeyBase58).
SPEC_DID = "did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH"
SPEC_PUBLIC_KEY_BASE58 = "B12NYF8RrR3h41TDCTJojY59usg3mbtbjnFs7Eud1Y6u"


def test_spec_vector_resolves_and_encodes_back() -> None:
    key = public_key_from_did(SPEC_DID)
    assert raw_public_bytes(key) == base58.b58decode(SPEC_PUBLIC_KEY_BASE58)
    assert did_from_public_key(key) == SPEC_DID


def test_fragment_naming_the_key_is_accepted() -> None:
    fragment = SPEC_DID.removeprefix("did:key:")
    assert raw_public_bytes(public_key_from_did(f"{SPEC_DID}#{fragment}")) == raw_public_bytes(
        public_key_from_did(SPEC_DID)
    )


def test_generated_key_round_trips() -> None:
    pair = KeyPair.generate()
    assert pair.did.startswith("did:key:z6Mk")
    assert raw_public_bytes(public_key_from_did(pair.did)) == pair.public_bytes
    assert len(pair.public_bytes) == 32
    again = KeyPair.from_private_bytes(pair.private_bytes)
    assert again.did == pair.did
    assert pair.did in repr(pair) and pair.private_bytes.hex() not in repr(pair)


def _did(payload: bytes) -> str:
    return "did:key:z" + base58.b58encode(payload).decode()


@pytest.mark.parametrize(
    ("did", "reason"),
    [
        ("did:web:example.com", "must start with 'did:key:'"),
        ("z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH", "must start with 'did:key:'"),
        ("did:key:f" + "00" * 34, "base58btc"),
        ("did:key:z0OIl", "not valid base58btc"),
        (_did(b"\xec\x01" + bytes(32)), "wrong multicodec"),  # x25519-pub
        (_did(b"\xed\x01" + bytes(31)), "holds 31"),
        (_did(b"\xed\x01" + bytes(33)), "holds 33"),
        (SPEC_DID + "#z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp", "fragment"),
    ],
)
def test_malformed_dids_are_refused(did: str, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason):
        public_key_from_did(did)


def test_private_key_length_is_checked() -> None:
    with pytest.raises(InvalidValue):
        KeyPair.from_private_bytes(b"short")


def test_decoded_did_keys_are_kept_and_refused_ones_are_refused_every_time() -> None:
    from openvrm.protocol import identity

    key = KeyPair.generate()
    first = public_key_from_did(key.did)
    assert public_key_from_did(key.did) is first  # decoded once, kept: the identifier is the key
    assert raw_public_bytes(first) == key.public_bytes
    assert public_key_from_did(f"{key.did}#{key.did.removeprefix('did:key:')}") == first
    bad = key.did[:-4] + "0OIl"  # not base58btc
    for _ in range(2):
        with pytest.raises(InvalidValue, match="base58btc"):
            public_key_from_did(bad)
    assert identity._decode_did_key.cache_info().maxsize == 4096


def test_ed25519_verification_agrees_with_cryptography() -> None:
    """verify_ed25519 (libsodium) takes what cryptography's own check takes and refuses what it refuses."""
    pair, other = KeyPair.generate(), KeyPair.generate()
    data = b"the signed bytes"
    good = pair.sign(data)
    verify_ed25519(pair.public_key, good, data)
    pair.public_key.verify(good, data)
    flipped = bytes([good[0] ^ 1]) + good[1:]
    # S + L: the same signature, its scalar no longer canonical (RFC 8032 5.1.7 requires S < L).
    order = 2**252 + 27742317777372353535851937790883648493
    s_plus_l = good[:32] + (int.from_bytes(good[32:], "little") + order).to_bytes(32, "little")
    refused = [
        (pair.public_key, good, data + b"!"),
        (pair.public_key, flipped, data),
        (pair.public_key, good[:63], data),
        (pair.public_key, good + b"\0", data),
        (pair.public_key, b"", data),
        (pair.public_key, s_plus_l, data),
        (other.public_key, good, data),
    ]
    for key, signature, message in refused:
        with pytest.raises(InvalidSignature):
            verify_ed25519(key, signature, message)
        with pytest.raises(InvalidSignature):
            key.verify(signature, message)
