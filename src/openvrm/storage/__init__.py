"""Storage ports: the relational store (SQLite or PostgreSQL) and the blob store."""
