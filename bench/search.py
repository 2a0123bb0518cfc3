"""Customer search benchmark: finding one customer among 1,000,000 by blind index.

    .venv/bin/python -m bench.search [--customers 1000000] [--searches 3000]
        [--store sqlite|postgresql] [--db URL]

Fills the search read model (`rm_customer_index`) of an empty store directly
with the entries of N customers (default 1,000,000): each has a phone, an
e-mail and a two-word name (first names from a list of 300, last names from
2,000, so a first name is shared by about 3,300 customers, a full name by one
or two). The HMACs are made with the store's own index key, exactly as the
read model makes them, and the rows go in with one bulk insert before the
table's indexes are built, as a rebuild does. No events are stored: the load
is what it would be after `ledger projections rebuild search`, without the
hours of appending a million customers.

Then, in process, it times `services.customers.find_customers` (what every
door calls: read-your-writes check, normalisation, HMACs, the index lookup, the
names of the customers found) for phone numbers typed in national notation,
e-mails in other case, full names and single first names, and prints p50 and
p99 per kind and the ratio against a raw indexed lookup on the same machine
(`SELECT customer_id ... WHERE hmac = ?` with the HMAC made beforehand: the
floor any search by an indexed value has). The goal: p99 < 20 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator

from bench.common import DEFAULT_PG, scratch_store
from ledger.config import parse_database_url
from ledger.db import Connection
from ledger.keystore.index_key import blind_index
from ledger.keystore.keyring import Keyring
from projections.search import SEARCH_INDEX
from projections.tables import create_indexes, create_table, drop_table
from projections.writing import insert_rows
from services.bootstrap import prepare_store
from services.customers import find_customers

_CHUNK = 200_000
_SYLLABLES = ("an", "ber", "ca", "dor", "el", "fi", "ga", "hen", "is", "jo", "ka", "lin",
              "mar", "no", "ol", "pe", "qui", "ros", "sa", "tin", "ul", "vik", "wen", "xa",
              "yo", "zel")  # fmt: skip


def _words(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(w.capitalize() for w in words)


FIRST = _words(300, 1)
LAST = _words(2000, 2)


def customer(i: int) -> tuple[str, str, str, str]:
    """Customer i's id, name, phone (E.164) and e-mail."""
    rng = random.Random(i)
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    return f"c-{i:07d}", name, f"+4930{i:07d}", f"user{i}@example.com"


def _rows(key: bytes, start: int, stop: int) -> Iterator[tuple[str, str, str]]:
    for i in range(start, stop):
        cid, name, phone, email = customer(i)
        yield blind_index(key, "phone", phone), "phone", cid
        yield blind_index(key, "email", email), "email", cid
        for word in dict.fromkeys(name.casefold().split()):
            yield blind_index(key, "name", word), "name", cid


def fill(url: str, customers: int) -> float:
    """Load N customers' index entries; the seconds it took."""
    started = time.perf_counter()
    with Connection(parse_database_url(url)) as conn:
        prepare_store(conn)
        key = Keyring.for_url(conn.url).index_key()
        table = SEARCH_INDEX.name
        with conn.transaction():
            drop_table(conn, table)
            create_table(conn, SEARCH_INDEX, table, indexes=False)
            for start in range(0, customers, _CHUNK):
                rows = list(_rows(key, start, min(customers, start + _CHUNK)))
                insert_rows(conn, table, SEARCH_INDEX.column_names, rows)
                print(f"  {min(customers, start + _CHUNK):,} customers", flush=True)
            create_indexes(conn, SEARCH_INDEX, table)
        if conn.kind == "postgresql":
            # VACUUM as autovacuum would soon after such a load: it sets the
            # visibility map, without which every lookup also reads the heap.
            conn.execute(f"VACUUM (ANALYZE) {table}")
        else:
            conn.execute("ANALYZE")
    return time.perf_counter() - started


def _timed(call: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000)
    return times


def _search_times(conn: Connection, texts: list[str]) -> tuple[list[float], list[float]]:
    """Each search's wall time and this process's CPU time for it (ms): on a
    machine shared with other work, the wall time's tail is mostly waiting for a core."""
    times, cpu = [], []
    for text in texts:
        t, c = time.perf_counter(), time.process_time()
        find_customers(conn, text)
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return times, cpu


def _p(times: list[float], q: float) -> float:
    return statistics.quantiles(times, n=100)[int(q) - 1] if len(times) > 1 else times[0]


def run(url: str, customers: int, searches: int) -> None:
    print(f"filling {customers:,} customers' index entries ...", flush=True)
    seconds = fill(url, customers)
    rng = random.Random(42)
    picks = [rng.randrange(customers) for _ in range(searches)]

    def phone(i: int) -> str:
        digits = f"{i:07d}"
        return f"030 {digits[:3]} {digits[3:]}"  # national notation, default region DE

    queries: dict[str, Callable[[int], str]] = {
        "phone (030 123 4567)": phone,
        "e-mail (other case)": lambda i: customer(i)[3].upper(),
        "full name": lambda i: customer(i)[1].lower(),
        "first name (a page of 20)": lambda i: customer(i)[1].split()[0],
    }
    with Connection(parse_database_url(url)) as conn:
        key = Keyring.for_url(conn.url).index_key()
        found = find_customers(conn, phone(picks[0]))
        assert [m.customer_id for m in found.items] == [customer(picks[0])[0]], found
        raw_sql = (
            f"SELECT customer_id FROM {SEARCH_INDEX.name} WHERE hmac = ? "
            "ORDER BY customer_id LIMIT 21"
        )
        hmacs = iter(blind_index(key, "phone", customer(i)[2]) for i in picks * 2)
        raw = _timed(lambda: conn.fetchall(raw_sql, (next(hmacs),)), searches)
        raw50 = statistics.median(raw)
        print(f"\n{conn.kind}, {customers:,} customers, loaded in {seconds:.0f} s")
        print(f"{'search':28} {'p50 ms':>8} {'p99 ms':>8} {'p50 / raw':>10} {'CPU p99 ms':>12}")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'raw indexed lookup':28} {raw50:8.3f} {_p(raw, 99):8.3f} {1:10.1f}")
        for label, make in queries.items():
            texts = [make(i) for i in picks]
            times, cpu = _search_times(conn, texts)
            p50, p99 = statistics.median(times), _p(times, 99)
            print(f"{label:28} {p50:8.3f} {p99:8.3f} {p50 / raw50:10.1f} {_p(cpu, 99):12.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--searches", type=int, default=3000, help="per kind of search")
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--db", help="URL of an empty store (default: a scratch one)")
    args = parser.parse_args()
    if args.db:
        run(args.db, args.customers, args.searches)
        return
    with scratch_store(args.store, DEFAULT_PG) as url:
        run(url, args.customers, args.searches)


if __name__ == "__main__":
    main()
