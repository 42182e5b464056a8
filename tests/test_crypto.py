import pytest

from openvrm.crypto import BoxKeyPair, KdfParams, Sealer, derive_kek, hkdf, random_key, seal_to
from openvrm.errors import IntegrityError, InvalidValue


def test_seal_round_trip_and_fresh_nonce() -> None:
    s = Sealer(random_key())
    a = s.seal(b"hello", b"vendors:1")
    b = s.seal(b"hello", b"vendors:1")
    assert a != b  # a random nonce per value
    assert s.open(a, b"vendors:1") == b"hello"


def test_associated_data_binds_the_record() -> None:
    s = Sealer(random_key())
    sealed = s.seal(b"hello", b"vendors:1")
    with pytest.raises(IntegrityError, match="moved from another record"):
        s.open(sealed, b"vendors:2")


def test_tampered_and_truncated_ciphertexts_are_refused() -> None:
    s = Sealer(random_key())
    sealed = bytearray(s.seal(b"hello world", b"x"))
    sealed[-1] ^= 1
    with pytest.raises(IntegrityError):
        s.open(bytes(sealed), b"x")
    with pytest.raises(IntegrityError, match="not a sealed value"):
        s.open(b"\x01abc", b"x")


def test_wrong_key_fails() -> None:
    sealed = Sealer(random_key()).seal(b"v", b"x")
    with pytest.raises(IntegrityError):
        Sealer(random_key()).open(sealed, b"x")


def test_argon2id_is_deterministic_per_salt_and_params() -> None:
    p = KdfParams.new(time_cost=1, memory_kib=8192, parallelism=1)
    assert derive_kek("passphrase", p) == derive_kek("passphrase", KdfParams.from_json(p.to_json()))
    assert derive_kek("passphrase", p) != derive_kek("passphrase2", p)
    other_salt = KdfParams.new(time_cost=1, memory_kib=8192, parallelism=1)
    assert derive_kek("passphrase", p) != derive_kek("passphrase", other_salt)
    with pytest.raises(InvalidValue):
        derive_kek("", p)


def test_default_kdf_meets_owasp_minimums() -> None:
    p = KdfParams.new()
    # OWASP: at least m=19 MiB with t=2, or m=46 MiB with t=1 (p=1).
    assert p.memory_kib >= 46 * 1024 or (p.memory_kib >= 19 * 1024 and p.time_cost >= 2)
    assert p.to_json()["algorithm"] == "argon2id"


def test_purpose_keys_differ() -> None:
    k = random_key()
    assert hkdf(k, "a") != hkdf(k, "b")


def test_sealed_box_only_opens_with_the_secret() -> None:
    pair = BoxKeyPair.generate()
    sealed = seal_to(pair.public, b"receipt")
    assert pair.open(sealed) == b"receipt"
    with pytest.raises(IntegrityError):
        BoxKeyPair.generate().open(sealed)
