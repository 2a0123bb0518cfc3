"""Every environment variable the ledger reads, in one list.

Modules import their variable's name from here, so a name is spelled once and
`docs/operations.md` can be checked against this list (tests/unit/test_environment.py).
The Kafka settings' variables are generated from their field table
(`consumers.kafka_config`, prefix `KAFKA_ENV_PREFIX`).
"""

from __future__ import annotations

DATABASE_URL_ENV = "LEDGER_DATABASE_URL"
RIGHTS_POLICY_ENV = "LEDGER_RIGHTS_POLICY"
AUTO_MIGRATE_ENV = "LEDGER_AUTO_MIGRATE"
MASTER_KEY_ENV = "LEDGER_MASTER_KEY_FILE"
KEYSTORE_URL_ENV = "LEDGER_KEYSTORE_URL"
PERSONAL_ORDER_FIELDS_ENV = "LEDGER_PERSONAL_ORDER_FIELDS"
ACCESS_FILE_ENV = "LEDGER_ACCESS_FILE"
CORS_ENV = "LEDGER_CORS_ORIGINS"
MAX_BODY_ENV = "LEDGER_MAX_BODY"
MAX_ITEMS_ENV = "LEDGER_MAX_ITEMS"
POOL_SIZE_ENV = "LEDGER_POOL_SIZE"
DEFAULT_API_POOL_SIZE = 8  # database connections per API process
APPEND_WRITER_ENV = "LEDGER_APPEND_WRITER"
# Its values: where `ledger serve` stores one-event appends; the first is the default.
APPEND_WRITERS = ("thread", "process")
DEFAULT_APPEND_WRITER = APPEND_WRITERS[0]
PROTECT_METRICS_ENV = "LEDGER_PROTECT_METRICS"
SESSION_SECRET_ENV = "LEDGER_SESSION_SECRET"
DEFAULT_REGION_ENV = "LEDGER_DEFAULT_REGION"
PEOPLE_FILE_ENV = "LEDGER_PEOPLE_FILE"
PAGE_USER_ENV = "LEDGER_PAGE_USER"
UNDO_WINDOW_ENV = "LEDGER_UNDO_WINDOW"
TENANT_ENV = "LEDGER_TENANT"
TENANTS_URL_ENV = "LEDGER_TENANTS_URL"
TENANTS_PER_SERVER_ENV = "LEDGER_TENANTS_PER_SERVER"
KAFKA_ENV_PREFIX = "LEDGER_KAFKA_"

# name -> what it sets (docs/operations.md has a row for each)
ENVIRONMENT: dict[str, str] = {
    DATABASE_URL_ENV: "the store: sqlite:///PATH or postgresql://...",
    RIGHTS_POLICY_ENV: "the rights policy file (TOML)",
    AUTO_MIGRATE_ENV: "0: commands never create tables (run `ledger db migrate`)",
    MASTER_KEY_ENV: "the master key file that wraps customers' data keys",
    KEYSTORE_URL_ENV: "a separate database for the key table",
    PERSONAL_ORDER_FIELDS_ENV: "extra order fields treated as personal data",
    ACCESS_FILE_ENV: "the API's access file (TOML)",
    CORS_ENV: "origins a browser may call the API from, comma-separated",
    MAX_BODY_ENV: "the largest API request body, in bytes",
    MAX_ITEMS_ENV: "the most events one API request may carry",
    POOL_SIZE_ENV: "database connections per API process",
    APPEND_WRITER_ENV: "where the API stores one-event appends: `thread` (default) or `process`",
    PROTECT_METRICS_ENV: "1: /metrics needs a key with the ops scope",
    SESSION_SECRET_ENV: "the card page's cookie-signing secret (share it between processes)",
    DEFAULT_REGION_ENV: "the country of phone numbers without a country code (default DE)",
    PEOPLE_FILE_ENV: "the people directory: users' names by id (CSV or TOML)",
    PAGE_USER_ENV: "who acts from the card page when the server runs open (default `local`)",
    UNDO_WINDOW_ENV: "how long a merge can be undone, e.g. 30d or 12h (default: always)",
    TENANT_ENV: "the tenant a command acts on, resolved through the tenant directory",
    TENANTS_URL_ENV: "the tenant directory's database: sqlite:///PATH or postgresql://...",
    TENANTS_PER_SERVER_ENV: "tenants' stores a server of many keeps open per database server",
}
