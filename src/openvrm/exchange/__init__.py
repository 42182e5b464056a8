"""Moving a vault in and out: export to a portable archive, import one back, and back up a vault.

* :func:`export_vault` writes every record in plaintext and every document file once into a ZIP,
  optionally encrypted as a standard age file (``docs/export-format.md``).
* :func:`import_archive` checks such an archive completely, then adds what the vault does not have yet,
  all or nothing.
* :func:`backup_vault` copies a vault, still encrypted and without its key, into a new SQLite vault home
  (``docs/backup.md``).
"""

from openvrm.exchange.backup import BackupSummary, backup_vault
from openvrm.exchange.export import ExportSummary, export_vault
from openvrm.exchange.format import (
    FORMAT,
    FORMAT_VERSION,
    ImportLimits,
    PassphraseNeeded,
    Progress,
    WrongArchivePassphrase,
    manifest_schema,
)
from openvrm.exchange.importer import ImportSummary, import_archive, is_encrypted

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "BackupSummary",
    "ExportSummary",
    "ImportLimits",
    "ImportSummary",
    "PassphraseNeeded",
    "Progress",
    "WrongArchivePassphrase",
    "backup_vault",
    "export_vault",
    "import_archive",
    "is_encrypted",
    "manifest_schema",
]
