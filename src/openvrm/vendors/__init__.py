"""Vendors and the person's relationships with them (the ledger issue extends this)."""
