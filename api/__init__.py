"""The HTTP API (`ledger serve`): a thin translation of HTTP to the service layer."""
