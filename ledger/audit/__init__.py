"""The audit trail: subject histories straight from the events table, hash-chain
verification and anchors, and least-privilege access for auditors.

Nothing here reads the projections: auditors must not have to trust the read
models. See docs/tamper-evidence.md for the design of the chain and its limits.
"""
