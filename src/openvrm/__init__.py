"""openvrm: Vendor Relationship Management for people.

The core package holds every capability as a plain-Python service; the CLI (``openvrm.cli``) and the
server (``openvrm.server``) are thin front ends over it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
