"""The encrypted vault: key management, sealed records and files, the locked-time inbox."""

from openvrm.vault.core import UnlockedVault, Vault

__all__ = ["UnlockedVault", "Vault"]
