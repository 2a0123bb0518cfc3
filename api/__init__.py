"""The HTTP side of the ledger."""
