"""Per-tab read models of the interaction ledger: projectors, runner, rebuild, tab queries."""
