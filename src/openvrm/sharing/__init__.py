"""Profile shares: which profile fields a relationship has been given (the protocol issue adds terms)."""
