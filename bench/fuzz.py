"""A longer run of the append property (tests/integration/test_property_append.py).

The suite runs the property with a few examples per store so it stays fast;
this runs it with many more, on both stores (PostgreSQL from LEDGER_TEST_PG_URL,
as the tests):

    .venv/bin/python -m bench.fuzz --examples 2000
"""

from __future__ import annotations

import argparse
import os
import sys

import pytest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="examples per store")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), help="one store only")
    args = parser.parse_args()
    os.environ["LEDGER_PROPERTY_EXAMPLES"] = str(args.examples)
    selection = ["-k", args.store] if args.store else []
    return pytest.main(
        [
            "-q",
            "-p",
            "no:cacheprovider",
            "--hypothesis-show-statistics",
            "tests/integration/test_property_append.py",
            *selection,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
