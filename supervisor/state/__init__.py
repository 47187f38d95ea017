"""The state directory and the sqlite ledger with its records."""
