from openvrm.vault.core import UnlockedVault


def test_vault_opens_on_backend(unlocked: UnlockedVault, backend: str) -> None:
    assert unlocked.db.backend == backend
    address, new = unlocked.put_file(b"x" * 100)
    assert new
    assert unlocked.get_file(address) == b"x" * 100
