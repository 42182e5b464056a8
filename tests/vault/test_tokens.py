from __future__ import annotations

from datetime import timedelta

import pytest

from openvrm.errors import AuthError
from openvrm.profile.service import ProfileService
from openvrm.storage.models import AccessToken
from openvrm.vault import tokens
from openvrm.vault.core import UnlockedVault
from tests.conftest import PASSPHRASE


def test_token_unlocks_without_the_passphrase(unlocked: UnlockedVault) -> None:
    ProfileService(unlocked).set("email", "a@example.org")
    token, info = tokens.create(unlocked, "backup script")
    via_token = tokens.unlock(unlocked.vault, token, kind="api")
    assert ProfileService(via_token).get("email") == "a@example.org"
    assert [t.name for t in tokens.list_tokens(unlocked)] == ["backup script"]
    tokens.revoke(unlocked.vault, info.id)
    with pytest.raises(AuthError):
        tokens.unlock(unlocked.vault, token)


def test_tokens_survive_a_passphrase_change(unlocked: UnlockedVault) -> None:
    from tests.conftest import fast_kdf

    token, _ = tokens.create(unlocked, "t")
    unlocked.vault.change_passphrase(PASSPHRASE, "another long passphrase", kdf=fast_kdf())
    tokens.unlock(unlocked.vault, token)


@pytest.mark.parametrize("bad", ["", "vrm_", "vrm_abc_def", "Bearer x", "vrm_" + "0" * 32 + "_" + "A" * 43])
def test_malformed_or_unknown_tokens_fail(unlocked: UnlockedVault, bad: str) -> None:
    with pytest.raises(AuthError):
        tokens.unlock(unlocked.vault, bad)


def test_wrong_secret_for_a_real_id_fails(unlocked: UnlockedVault) -> None:
    token, info = tokens.create(unlocked, "t")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthError):
        tokens.unlock(unlocked.vault, forged)


def test_expired_session_fails_and_kind_is_enforced(unlocked: UnlockedVault) -> None:
    token, info = tokens.create(unlocked, "s", kind="session", ttl=timedelta(minutes=5))
    tokens.unlock(unlocked.vault, token, kind="session")
    with pytest.raises(AuthError):
        tokens.unlock(unlocked.vault, token, kind="api")
    with unlocked.db.write() as s:
        row = s.get(AccessToken, info.id)
        assert row is not None and row.expires_at is not None
        row.expires_at = row.expires_at - timedelta(hours=1)
    with pytest.raises(AuthError, match="expired"):
        tokens.unlock(unlocked.vault, token, kind="session")
    assert tokens.revoke_kind(unlocked.vault, "session") == 1
