"""The bundled vendor directory: organisations with their privacy contacts, and supervisory authorities."""

from openvrm.directory.catalog import Authority, Directory, DirectoryEntry, SearchHit, directory

__all__ = ["Authority", "Directory", "DirectoryEntry", "SearchHit", "directory"]
