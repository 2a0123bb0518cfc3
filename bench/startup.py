"""CLI start-up benchmark: wall time of `ledger tab` and `ledger --help` against
`python -c pass` on the same machine, in the same run.

    .venv/bin/python -m bench.startup [--runs 15] [--tab card] [--db URL]

Stores the demo customers in a scratch SQLite store (`ledger demo`), reads the
tab once (which brings its read model up to date: the timed reads only read),
then runs each command `--runs` times,
interleaved so that load from other work falls on all of them alike, and prints
min / median / p90 wall time, each command's median over `python -c pass`'s,
and how many modules a tab read imports. Goal: a tab under 150 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LEDGER = str(Path(sys.executable).parent / "ledger")
CUSTOMER = "cust-1001"
_MODULES = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print(len(sys.modules), file=sys.stderr))\n"
    "from cli.main import main\n"
    "sys.argv = ['ledger', *sys.argv[1:]]\n"
    "main()\n"
)


# As a user's shell runs it: Python caches compiled modules. Without this, a shell
# with PYTHONDONTWRITEBYTECODE set (some containers and CI images) would time
# compiling the project's hundred-odd modules from source on every run.
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_ENV
    )
    return time.perf_counter() - started


def _modules(db: str, tab: str) -> int:
    command = [sys.executable, "-c", _MODULES, "--db", db, "tab", CUSTOMER, tab]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return int(result.stderr.strip().splitlines()[-1])


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--tab", default="card", help="the tab read (default card)")
    parser.add_argument("--db", help="an existing store holding the demo customers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"sqlite:///{Path(tmp) / 'ledger.db'}"
        if args.db is None:
            subprocess.run(
                [LEDGER, "--db", db, "demo"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "ledger --help": [LEDGER, "--help"],
            f"ledger tab {CUSTOMER} {args.tab}": [LEDGER, "--db", db, "tab", CUSTOMER, args.tab],
        }
        _wall(commands[f"ledger tab {CUSTOMER} {args.tab}"])  # catch up; write .pyc; warm caches
        _wall(commands["ledger --help"])
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(_wall(command))
        modules = _modules(db, args.tab)
    base = statistics.median(times["python -c pass"])
    print(f"{args.runs} runs each, interleaved; {_load()}")
    for name, values in times.items():
        values.sort()
        median = statistics.median(values)
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        print(
            f"{name:32} min {values[0] * 1000:6.1f}  median {median * 1000:6.1f}  "
            f"p90 {p90 * 1000:6.1f} ms  ({median / base:.1f}x python -c pass)"
        )
    print(f"a tab read imports {modules} modules")
    print(json.dumps({name: statistics.median(v) for name, v in times.items()}))


if __name__ == "__main__":
    main()
