"""The append engine: producer events validated and stored, in batches.

`appender.Appender` is the entry point (its module says how the two modes run
and why memory stays flat); `deciding.Decider`, its base, decides what each
batch comes to and keeps the customers' states between batches; `report` holds
what an append reports. Callers above the ledger use `services.appending`.
"""
