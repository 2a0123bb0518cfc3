"""Peak memory of `ledger append` as the input grows: it must stay flat.

    .venv/bin/python -m bench.append_memory [--events 1000000] [--customers 100000]
        [--store sqlite|postgresql] [--samples 10] [--skip-invalid]

Generates N valid events over C customers as NDJSON (streamed to a temporary
file), runs `ledger append` on it in a child process (all or nothing, one
transaction) and samples the child's resident memory every second. Prints the
RSS at each tenth of the run's time and the peak (the kernel's high-water mark).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import DEFAULT_PG, generate_events, scratch_store, write_ndjson


def _rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def _read_fraction(pid: int, path: Path) -> float | None:
    """How far the child has read its input file (its file offset / the size)."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
                pos = int(info.split("pos:", 1)[1].split()[0])
                return pos / path.stat().st_size
    except (OSError, IndexError, ValueError):
        return None
    return None


def measure(url: str, path: Path, skip_invalid: bool) -> tuple[float, float, list[float]]:
    """Elapsed seconds, peak RSS in MB, and the RSS sampled once a second
    (printed every 30 s with how much of the input was read, so a long run
    shows its curve while it goes)."""
    ledger = str(Path(sys.executable).with_name("ledger"))
    command = [ledger, "--db", url, "append", str(path), "--format", "json"]
    if skip_invalid:
        command.append("--skip-invalid")
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    samples: list[float] = []
    while child.poll() is None:
        rss = _rss_mb(child.pid)
        if rss is not None:
            samples.append(rss)
            if len(samples) % 30 == 0:
                read = _read_fraction(child.pid, path)
                done = f"{read:6.1%} of the input read" if read is not None else ""
                print(f"  {len(samples):>6} s  RSS {rss:5.0f} MB  {done}", flush=True)
        time.sleep(1)
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"ledger append exited {child.returncode}")
    # ru_maxrss of waited-for children, in KiB on Linux: the true peak.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return elapsed, peak, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("LEDGER_BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--skip-invalid", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, scratch_store(args.store, args.pg_url) as url:
        path = Path(tmp) / "events.ndjson"
        n = write_ndjson(generate_events(args.events, args.customers), path)
        elapsed, peak, samples = measure(url, path, args.skip_invalid)
    step = max(1, len(samples) // args.samples)
    curve = " ".join(f"{s:.0f}" for s in samples[::step])
    print(
        f"{args.store:<10} {n:>11,} events  {args.customers:>9,} customers  "
        f"{elapsed:>7.0f} s  {n / elapsed:>8,.0f} events/s  peak RSS {peak:.0f} MB"
    )
    print(f"RSS over time (MB): {curve}")


if __name__ == "__main__":
    main()
