"""The service layer: one module per use case, the only thing `cli/` and `api/` call.

`bootstrap.Services` is the composition root; `errors` holds the categories
every door maps (exit codes, HTTP statuses). Below it: `relay/` and
`projections/`, then `ledger/` (domain, contracts, stores, the append engine).
"""
