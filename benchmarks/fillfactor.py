"""The fillfactor of chat_turns partitions: HOT share of the settle's updates, CPU, WAL and bytes per turn.

Each turn row is inserted, then rewritten once by the settle (counted). Free room on the row's page
makes that update HOT (same page, no index entries, only the changed bytes logged); the room costs
disk for good. For each fillfactor, on a fresh database per setting and round (settings alternate
within a round, the machine is shared): writes the write benchmark's batches (CHAIN + LLM span pairs,
one auto turn per trace, ~300-byte messages) through BatchWriter, then settles every turn, as
``benchmarks/write.py`` does, and prints

* CPU µs per span (this process + its Postgres backends, write and settle) and spans/s;
* the settle's share of HOT updates (pg_stat_user_tables over the chat_turns partitions) and its WAL
  (bytes and full-page images, pg_stat_wal);
* chat_turns bytes per turn (pg_total_relation_size after VACUUM) once settled, and again after a
  second day's worth of turns is written and settled into the same partition (the space freed by the
  first day's old versions is reused, or not: what a partition looks like in steady state).

Autovacuum is off on the benchmark's own server so that the WAL and stats are the settle's alone;
each size is measured after an explicit VACUUM.

    python benchmarks/fillfactor.py [--fillfactors 50,70,80,90,100] [--rounds 3] [--batches 200]
                                    [--batch-size 512] [--settle-limit 500]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from support import drop_database, fresh_database, postgres
from write import _backend_cpu, build_batch

from otel_chatbot.records import NormalisedBatch
from otel_chatbot.store import partitions
from otel_chatbot.store import writer as writer_module
from otel_chatbot.store.writer import BatchWriter

FAR_NS = 10**15  # added to now: a settle that counts every turn stored


@dataclass
class Phase:
    seconds: float
    cpu: float  # seconds of this process and the writer's backend
    wal_bytes: int
    wal_fpi: int
    updates: int
    hot_updates: int


def _wal(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[int, int]:
    row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, (SELECT wal_fpi FROM pg_stat_wal)"
                       ).fetchone()
    assert row is not None
    return int(str(row[0])), int(str(row[1]))


def _updates(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[int, int]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_hot_upd), 0) FROM pg_stat_user_tables "
        "WHERE relid IN (SELECT relid FROM pg_partition_tree('chat_turns') WHERE isleaf)").fetchone()
    assert row is not None
    return int(str(row[0])), int(str(row[1]))


def _gone(conn: psycopg.Connection[tuple[object, ...]], pid: int) -> None:
    """Until backend ``pid`` has exited (it reports its table stats as it exits)."""
    for _ in range(200):
        if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (0,):
            return
        time.sleep(0.05)
    raise SystemExit(f"backend {pid} did not exit")


def _phase(url: str, observer: psycopg.Connection[tuple[object, ...]],
           batches: list[NormalisedBatch] | None) -> Phase:
    """Write ``batches`` (or, with None, settle every turn) through a writer of its own."""
    writer = BatchWriter(url, settle_seconds=10)
    writer.start()
    assert writer._conn is not None
    pid = writer._conn.info.backend_pid
    wal0, fpi0 = _wal(observer)
    upd0, hot0 = _updates(observer)
    cpu0, py0 = _backend_cpu([pid]), time.process_time()
    started = time.perf_counter()
    try:
        if batches is None:
            writer.settle(until_ns=time.time_ns() + FAR_NS)
        else:
            for batch in batches:
                writer.write(batch)
        seconds = time.perf_counter() - started
        cpu = _backend_cpu([pid]) - cpu0 + time.process_time() - py0
    finally:
        writer.shutdown()
    wal1, fpi1 = _wal(observer)
    _gone(observer, pid)
    upd1, hot1 = _updates(observer)
    return Phase(seconds, cpu, wal1 - wal0, fpi1 - fpi0, upd1 - upd0, hot1 - hot0)


def _bytes_per_turn(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[float, float]:
    """(chat_turns bytes per turn with indexes and TOAST, heap bytes per turn) after VACUUM."""
    conn.execute("VACUUM chat_turns")
    row = conn.execute(
        "SELECT sum(pg_total_relation_size(relid)), sum(pg_relation_size(relid)), "
        "(SELECT count(*) FROM chat_turns) FROM pg_partition_tree('chat_turns') WHERE isleaf").fetchone()
    assert row is not None
    turns = int(str(row[2]))
    return int(str(row[0])) / turns, int(str(row[1])) / turns


def _set_fillfactor(fillfactor: int) -> None:
    # New partitions take it from here (the writer creates the day's partition on its first write).
    partitions.PARTITION_STORAGE["chat_turns"] = sql.SQL(" WITH (fillfactor = {})").format(
        sql.Literal(fillfactor))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fillfactors", default="50,70,80,90,100",
                        help="comma-separated fillfactors to compare (default 50,70,80,90,100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every setting (default 3)")
    parser.add_argument("--batches", type=int, default=200, help="batches per day (default 200)")
    parser.add_argument("--batch-size", type=int, default=512, help="spans per batch (default 512)")
    parser.add_argument("--settle-limit", type=int, default=writer_module._SETTLE_LIMIT,
                        help="turns per settle statement (default the writer's, "
                             f"{writer_module._SETTLE_LIMIT}); a few: a settle at a low turn rate, "
                             "where a page's rows settle in different transactions")
    args = parser.parse_args()
    try:
        fillfactors = [int(x) for x in args.fillfactors.split(",")]
    except ValueError:
        parser.error(f"--fillfactors: expected comma-separated integers, got {args.fillfactors!r}")
    if (any(not 10 <= f <= 100 for f in fillfactors) or args.rounds < 1 or args.batches < 1
            or args.settle_limit < 1):
        parser.error("fillfactors must be within 10..100, --rounds, --batches and --settle-limit >= 1")
    writer_module._SETTLE_LIMIT = args.settle_limit

    rng = random.Random(7)
    now = time.time_ns()
    day1 = [build_batch(rng, args.batch_size, now) for _ in range(args.batches)]
    day2 = [build_batch(rng, args.batch_size, now) for _ in range(args.batches)]
    warmup = build_batch(rng, args.batch_size, now)
    gc.freeze()
    spans = sum(len(b.spans) for b in day1)
    results: dict[int, list[dict[str, float]]] = defaultdict(list)
    with postgres() as server, psycopg.connect(server.admin_url, autocommit=True) as admin:
        admin.execute("ALTER SYSTEM SET autovacuum = off")
        admin.execute("SELECT pg_reload_conf()")
        for round_no in range(1, args.rounds + 1):
            order = fillfactors[round_no - 1:] + fillfactors[:round_no - 1]  # a different one first
            for ff in order:
                _set_fillfactor(ff)
                name, url = fresh_database(server.admin_url)
                try:
                    with psycopg.connect(url, autocommit=True) as observer:
                        _phase(url, observer, [warmup])
                        _phase(url, observer, None)
                        load = Path("/proc/loadavg").read_text().split()[0]
                        write = _phase(url, observer, day1)
                        settle = _phase(url, observer, None)
                        settled, settled_heap = _bytes_per_turn(observer)
                        _phase(url, observer, day2)
                        settle2 = _phase(url, observer, None)
                        steady, steady_heap = _bytes_per_turn(observer)
                finally:
                    drop_database(server.admin_url, name)
                cpu_us = 1e6 * (write.cpu + settle.cpu) / spans
                rate = spans / (write.seconds + settle.seconds)
                turns = settle.updates
                hot = settle.hot_updates / turns if turns else float("nan")
                hot2 = settle2.hot_updates / settle2.updates if settle2.updates else float("nan")
                results[ff].append({"cpu": cpu_us, "rate": rate, "hot": hot, "hot2": hot2,
                                    "wal": settle.wal_bytes / 2**20, "fpi": settle.wal_fpi,
                                    "settle_cpu": 1e6 * settle.cpu / turns if turns else float("nan"),
                                    "settled": settled, "steady": steady})
                print(f"round {round_no} fillfactor {ff:>3} (load {load}): CPU {cpu_us:.1f} µs/span, "
                      f"{rate:,.0f} spans/s (write {write.wal_bytes / 2**20:.1f} MiB WAL); "
                      f"settle: {settle.hot_updates}/{settle.updates} HOT, "
                      f"{settle.wal_bytes / 2**20:.1f} MiB WAL ({settle.wal_fpi} FPI), "
                      f"{1e6 * settle.cpu / max(turns, 1):.1f} µs CPU/turn; bytes/turn settled "
                      f"{settled:,.0f} (heap {settled_heap:,.0f}); after day 2 "
                      f"{steady:,.0f} (heap {steady_heap:,.0f}), day-2 settle "
                      f"{settle2.hot_updates}/{settle2.updates} HOT, {settle2.wal_bytes / 2**20:.1f} MiB WAL",
                      flush=True)
    print(f"\nmedians of {args.rounds} rounds ({args.batches} batches x {args.batch_size} spans per day):")
    print("fillfactor  CPU µs/span  spans/s  settle HOT  day-2 HOT  settle WAL MiB  settle µs/turn  "
          "bytes/turn settled  after day 2")
    for ff in fillfactors:
        med = {k: statistics.median(r[k] for r in results[ff]) for k in results[ff][0]}
        print(f"{ff:>10}  {med['cpu']:>11.1f}  {med['rate']:>7,.0f}  {med['hot']:>10.1%}  "
              f"{med['hot2']:>9.1%}  {med['wal']:>14.1f}  {med['settle_cpu']:>14.1f}  "
              f"{med['settled']:>18,.0f}  {med['steady']:>11,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
