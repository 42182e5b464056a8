"""Values sealed to a did:key open only with that key, and any change is detected."""

from __future__ import annotations

import pytest

from openvrm.errors import IntegrityError, InvalidValue
from openvrm.protocol.identity import KeyPair
from openvrm.protocol.sealing import (
    MAX_SEALED_BYTES,
    SEAL_ALG,
    open_sealed,
    open_sealed_json,
    seal_for,
    seal_json_for,
)


def test_round_trip_and_shape() -> None:
    key = KeyPair.generate()
    sealed = seal_json_for(key.did, {"email": "ada@example.org", "n": 1})
    assert sealed["alg"] == SEAL_ALG
    assert sealed["to"] == f"{key.did}#{key.did.removeprefix('did:key:')}"
    assert "ada@example.org" not in sealed["ciphertext"]
    assert open_sealed_json(key, sealed) == {"email": "ada@example.org", "n": 1}


def test_sealing_is_randomised() -> None:
    key = KeyPair.generate()
    assert seal_for(key.did, b"same")["ciphertext"] != seal_for(key.did, b"same")["ciphertext"]


def test_another_key_cannot_open_even_if_it_claims_to_be_the_recipient() -> None:
    key, other = KeyPair.generate(), KeyPair.generate()
    sealed = seal_for(key.did, b"secret")
    with pytest.raises(InvalidValue, match="another key"):
        open_sealed(other, sealed)
    relabelled = sealed | {"to": f"{other.did}#{other.did.removeprefix('did:key:')}"}
    with pytest.raises(IntegrityError):
        open_sealed(other, relabelled)


def test_tampering_and_bad_shapes_are_refused() -> None:
    key = KeyPair.generate()
    sealed = seal_for(key.did, b"secret")
    flipped = (
        sealed["ciphertext"][:-2]
        + ("A" if sealed["ciphertext"][-2] != "A" else "B")
        + sealed["ciphertext"][-1]
    )
    with pytest.raises(IntegrityError):
        open_sealed(key, sealed | {"ciphertext": flipped})
    with pytest.raises(InvalidValue):
        open_sealed(key, sealed | {"alg": "RSA"})
    with pytest.raises(InvalidValue):
        open_sealed(key, "not an object")
    with pytest.raises(InvalidValue):
        open_sealed(key, sealed | {"ciphertext": "***"})
    with pytest.raises(InvalidValue, match="limited"):
        seal_for(key.did, b"x" * (MAX_SEALED_BYTES + 1))
    with pytest.raises(IntegrityError, match="JSON"):
        open_sealed_json(key, seal_for(key.did, b"\xff not json"))
