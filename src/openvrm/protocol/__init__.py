"""The VRM protocol building blocks: identities, signed records and signed HTTP requests.

This package is pure: no database, no web framework. The server and the agent adapt their own request and
storage types to the plain values used here.
"""
