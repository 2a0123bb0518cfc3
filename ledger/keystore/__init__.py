"""Per-customer data keys, wrapped by a master key kept outside the database.

`keyring.Keyring` is the way in: it gives readers and the append engine each
customer's data key, makes new ones and destroys erased ones. `table` holds the
key table and the store-format check, `master` the master key file, `ciphers`
the wrapping of data keys under the master key (and the readers' view of them,
`Ciphers`), `errors` the one error a user must fix. See docs/privacy.md.
"""
