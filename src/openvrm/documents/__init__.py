"""Documents: files kept in the vault (bills, receipts, contracts, letters), linked to vendors."""
