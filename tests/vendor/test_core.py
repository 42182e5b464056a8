"""The kit's configuration, key file and local checks (no HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from openvrm.errors import InvalidValue
from openvrm.protocol import messages as m
from openvrm.vendor import VendorConfig, VendorKit, load_or_create_key
from tests.vendor.helpers import Person, config


def test_key_file_is_created_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "k" / "vendor.key"
    key = load_or_create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600 and path.stat().st_size == 32
    assert load_or_create_key(path).did == key.did
    path.chmod(0o644)
    with pytest.raises(InvalidValue, match="chmod 600"):
        load_or_create_key(path)


def test_config_checks_and_round_trip(tmp_path: Path) -> None:
    with pytest.raises(InvalidValue):
        config(tmp_path, accepted_terms=("no-such-term",))
    with pytest.raises(InvalidValue):
        config(tmp_path, replay_window_seconds=5)
    cfg = config(tmp_path, base_url="http://127.0.0.1:9001/")
    assert cfg.base_url == "http://127.0.0.1:9001"
    cfg.save()
    assert (cfg.store_dir / "vendor.json").stat().st_mode & 0o777 == 0o600
    loaded = VendorConfig.load(cfg.store_dir)
    assert loaded.to_json() == cfg.to_json()


def test_push_checks_before_anything_is_stored(tmp_path: Path) -> None:
    kit = VendorKit(config(tmp_path))
    try:
        person = Person()
        proffer = person.proffer(kit.did, "service-delivery-only")
        answer = kit.answer_proffer(proffer, person.key.did)
        aid = kit.accept_agreement(m.make_agreement(person.key, proffer, answer), person.key.did)[
            "agreement_id"
        ]
        with pytest.raises(InvalidValue, match="700 KiB"):
            kit.push_receipt(aid, "R1", None, "1.00", "EUR", attachment=b"x" * (700 * 1024 + 1))
        with pytest.raises(InvalidValue, match="amount"):
            kit.push_receipt(aid, "R1", None, "1,00", "EUR")
        with pytest.raises(InvalidValue):
            kit.push(aid, "grant", {})  # a person's subtype
        with pytest.raises(InvalidValue, match="IRI"):
            kit.request_data(aid, ["phone"], "ServiceProvision", "why")
        assert kit.events(aid) == []
    finally:
        kit.close()
