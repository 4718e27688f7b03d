"""Index build time and size, check latency in-process and over HTTP, and throughput under concurrent load.

    python benchmarks/check_bench.py --bundle /tmp/bench/m20k/bundle --db /tmp/bench/m20k.db
    python benchmarks/check_bench.py --db /tmp/bench/m20k.db --checks 300 --clients 8 --duration 30
    python benchmarks/check_bench.py --db /tmp/bench/m20k.db --profile 50     # where a check's time goes
    python benchmarks/check_bench.py --accuracy 5 --bundle /tmp/bench/m2k/bundle --db /tmp/bench/m2k-held.db
    python benchmarks/check_bench.py --hold-out 300 --bundle /tmp/bench/m20k/bundle --db /tmp/bench/m20k-held.db

The index is built with `assoc index add` (a subprocess: its wall time and peak RSS are its own)
when --db does not exist yet. Candidates are new stores of --listings text-only listings: each
carries the signals of a random indexed store (so it shares that store's keys, hubs and near-hub
values included: the expensive case, with value support to compute) and listings taken from that
store and from random others, under new ids. With --hold-out N they are instead stores as they
arrive: --db is built (in this process, when it does not exist) from --bundle without N of its
stores that have --listings listings or more, and the candidates are those stores, each with its
own signals and first --listings listings. Everything talks to 127.0.0.1 only; the load phase is
bounded by --duration and --clients.

Besides wall-clock percentiles, every phase reports the CPU time a check costs (the benchmark's own
process in-process, the server process's over HTTP, from /proc): on a machine shared with other
jobs, wall time is CPU time plus waiting for a core. The first server's resident memory is read
once it listens (after its prewarm). The in-process phase runs as a long-lived
process that embeds assoc should: warmed up (--warmup checks), then gc.freeze() and the collector's
young-generation threshold raised, as `assoc serve` does at start (--no-gc-freeze to measure
without), with the index's listing tables read into memory first (assoc.check.prewarm, as `assoc
serve` does before it listens; --no-prewarm to measure checks that read them from the file).
--servers N starts N server processes and spreads the load phase's clients over them (the GIL bounds
one process to one core).

--accuracy N measures what is approximate: N stores are held out of the index, and for each one
the check is compared with a full scan of the index plus that store (pairs, operator scores,
linked decisions, catalog overlaps).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import http.client
import json
import os
import pstats
import random
import resource
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from assoc import Settings
from assoc.bundle import read_bundle
from assoc.check import check_store, records_of
from assoc.records import Bundle, Product, Store
from assoc.server import YOUNG_GC_THRESHOLD
from assoc.store import IndexStore, StoreRecord

_LAUNCH = "from assoc.cli import main; main()"
HOLD_OUT_SEED = 1  # which stores --hold-out leaves out of the index: fixed, as the index outlives a run


def build(bundle: Path, db: Path) -> dict[str, Any]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _LAUNCH, "index", "add", str(bundle), "--db", str(db), "-q"], check=True)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with IndexStore.open(db) as index:
        stats = index.stats(Settings().hub_cap)
    return {"build_seconds": round(seconds, 1), "build_peak_rss_mb": round(peak_kb / 1024), **stats}


def candidates(db: Path, count: int, listings: int, seed: int) -> list[dict[str, Any]]:
    """New stores, as the stores.jsonl records an ERP would send."""
    rng = random.Random(seed)
    with IndexStore.open(db) as index:
        ids = [s for (s,) in index.connection.execute("SELECT store_id FROM stores ORDER BY store_id")]
        out = []
        for number in range(count):
            model = index.store_record(rng.choice(ids))
            pool = list(model.products)
            while len(pool) < 2 * listings:
                pool += index.store_record(rng.choice(ids)).products
            chosen = pool[: listings // 2] + rng.sample(pool[listings // 2:], listings - listings // 2)
            store = Store(f"BENCH{number:05d}", "bench store", model.store.platform, model.store.country)
            products = tuple(Product(store.store_id, f"P{n}", p.title, p.description, p.price, p.currency)
                             for n, p in enumerate(chosen))
            record = StoreRecord(store, model.root, model.signals, products)
            out.append(_as_json(record))
    return out


def held_out(bundle: Bundle, listings: int, count: int, seed: int) -> set[str]:
    """`count` stores of the bundle with `listings` listings or more, drawn at random."""
    sizes = Counter(p.store_id for p in bundle.products)
    return set(random.Random(seed).sample(sorted(s for s in bundle.stores if sizes[s] >= listings), count))


def without(bundle: Bundle, drop: set[str]) -> Bundle:
    """The bundle less the stores in `drop`, with their signals and products."""
    return Bundle(root=bundle.root, stores={k: v for k, v in bundle.stores.items() if k not in drop},
                  signals=[s for s in bundle.signals if s.store_id not in drop],
                  products=[p for p in bundle.products if p.store_id not in drop])


def new_stores(bundle: Bundle, db: Path, count: int, listings: int, seed: int) -> list[dict[str, Any]]:
    """Stores of the bundle that the index does not hold (those held out when it was built), as they would
    arrive: each with its own signals and its first `listings` listings, text only; `count` of those with
    `listings` listings or more, drawn at random."""
    with IndexStore.open(db) as index:
        indexed = {s for (s,) in index.connection.execute("SELECT store_id FROM stores")}
    fit = [r for r in records_of(bundle) if r.store.store_id not in indexed and len(r.products) >= listings]
    if len(fit) < count:
        raise SystemExit(f"the index lacks {len(fit)} of the bundle's stores with {listings} listings or more; "
                         f"{count} are needed (raise --hold-out, or lower --checks or --warmup)")
    return [_as_json(StoreRecord(r.store, r.root, r.signals,
                                 tuple(replace(p, images=()) for p in r.products[:listings])))
            for r in random.Random(seed).sample(fit, count)]


def _as_json(record: StoreRecord) -> dict[str, Any]:
    return {"store_id": record.store.store_id, "name": record.store.name, "platform": record.store.platform,
            "country": record.store.country,
            "signals": [{"kind": s.kind, "value": s.value, "seen_at": s.seen_at.isoformat() if s.seen_at else ""}
                        for s in record.signals],
            "products": [{"product_id": p.product_id, "title": p.title, "description": p.description,
                          "price": p.price, "currency": p.currency} for p in record.products]}


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"n": len(ordered), "p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "max_ms": round(1000 * ordered[-1], 2), "mean_ms": round(1000 * statistics.fmean(ordered), 2)}


def in_process(db: Path, records: list[dict[str, Any]], *, warmup: int = 5, freeze: bool = True,
               memory: bool = True) -> dict[str, Any]:
    from assoc import check
    from assoc.check import candidate_from_record, records_of

    # (getattr: the same harness measures older versions, without prewarm, for before/after figures)
    prewarm = getattr(check, "prewarm", None) if memory else None

    settings = Settings(cache_dir=None)
    samples = []
    linked = 0
    full_collections = [0]
    threshold = gc.get_threshold()

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full_collections[0] += 1

    with IndexStore.open(db) as index:
        prewarm_seconds = None
        if prewarm is not None:
            start = time.perf_counter()
            prewarm(index)
            prewarm_seconds = round(time.perf_counter() - start, 1)
        for warm in records[:warmup]:
            check_store(index, records_of(candidate_from_record(warm, root=db.parent))[0], settings)
        if freeze:
            gc.collect()
            gc.freeze()
            gc.set_threshold(YOUNG_GC_THRESHOLD, *threshold[1:])
        gc.callbacks.append(count)
        measured = records[warmup:]
        cpu = time.process_time()
        for record in measured:
            # Parsing and validation are part of a check's cost, as the server pays them too.
            start = time.perf_counter()
            candidate = records_of(candidate_from_record(record, root=db.parent))[0]
            result = check_store(index, candidate, settings)
            samples.append(time.perf_counter() - start)
            linked += result.associated
        cpu = time.process_time() - cpu
        gc.callbacks.remove(count)
        if freeze:
            gc.unfreeze()
            gc.set_threshold(*threshold)
    return {**_percentiles(samples), "cpu_ms_per_check": round(1000 * cpu / len(measured), 2),
            "associated": linked, "warmup": warmup, "gc_freeze": freeze, "full_gc_runs": full_collections[0],
            "prewarm_seconds": prewarm_seconds}


def profile(db: Path, records: list[dict[str, Any]], *, warmup: int, memory: bool, top: int = 35) -> None:
    """cProfile over the checks of `records` (after `warmup` others), cumulative and own time."""
    from assoc.check import candidate_from_record, prewarm, records_of

    settings = Settings(cache_dir=None)
    with IndexStore.open(db) as index:
        if memory:
            prewarm(index)
        for warm in records[:warmup]:
            check_store(index, records_of(candidate_from_record(warm, root=db.parent))[0], settings)
        profiler = cProfile.Profile()
        profiler.enable()
        for record in records[warmup:]:
            check_store(index, records_of(candidate_from_record(record, root=db.parent))[0], settings)
        profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


class _Server:
    def __init__(self, db: Path, token: str | None = None):
        self.token = token or secrets.token_hex(16)
        env = {**os.environ, "ASSOC_TOKEN": self.token}
        self.process = subprocess.Popen([sys.executable, "-c", _LAUNCH, "serve", "--db", str(db), "--port", "0",
                                         "--host", "127.0.0.1"], env=env, stderr=subprocess.PIPE, text=True)
        line = self.process.stderr.readline()
        if not line.startswith("listening on"):
            raise SystemExit(f"server did not start: {line}{self.process.stderr.read()}")
        self.port = int(line.rsplit(":", 1)[1])

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def check(self, connection: http.client.HTTPConnection, body: bytes) -> int:
        connection.request("POST", "/v1/check", body=body, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=60)

    def memory_mb(self) -> dict[str, int] | None:
        """The server process's resident memory now and at its peak (VmRSS, VmHWM), in MB; None without /proc."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {name: int(fields[field].split()[0]) // 1024 for name, field in (("rss", "VmRSS"), ("peak", "VmHWM"))}

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server process has used so far; None where /proc is missing."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_cpu_ms(servers: list[_Server], before: list[float | None], checks: int) -> float | None:
    after = [server.cpu_seconds() for server in servers]
    if checks == 0 or any(x is None for x in before + after):
        return None
    return round(1000 * sum(b - a for a, b in zip(before, after, strict=True)) / checks, 2)  # type: ignore[operator]


def over_http(server: _Server, records: list[dict[str, Any]], *, warmup: int = 5) -> dict[str, Any]:
    bodies = [json.dumps(r).encode() for r in records]
    connection = server.connection()
    for body in bodies[:warmup]:
        server.check(connection, body)
    samples, errors = [], 0
    cpu = [server.cpu_seconds()]
    for body in bodies:
        start = time.perf_counter()
        errors += server.check(connection, body) != 200
        samples.append(time.perf_counter() - start)
    connection.close()
    return {**_percentiles(samples), "server_cpu_ms_per_check": _server_cpu_ms([server], cpu, len(bodies)),
            "errors": errors}


def load(servers: list[_Server], records: list[dict[str, Any]], clients: int, duration: float) -> dict[str, Any]:
    bodies = [json.dumps(r).encode() for r in records]
    lock = threading.Lock()
    samples: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + duration

    def client(number: int) -> None:
        server = servers[number % len(servers)]
        connection = server.connection()
        k = number
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                status = server.check(connection, bodies[k % len(bodies)])
            except (OSError, http.client.HTTPException) as exc:
                status = repr(exc)
                connection.close()
                connection = server.connection()
            elapsed = time.perf_counter() - start
            with lock:
                samples.append(elapsed)
                if status != 200:
                    errors.append(str(status))
            k += clients
        connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    cpu = [server.cpu_seconds() for server in servers]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - start
    return {"clients": clients, "servers": len(servers), "seconds": round(wall, 1), "requests": len(samples),
            "throughput_per_s": round(len(samples) / wall, 1), "errors": len(errors), **_percentiles(samples),
            "server_cpu_ms_per_check": _server_cpu_ms(servers, cpu, len(samples))}


def accuracy(bundle_dir: Path, db: Path, held: int, seed: int) -> dict[str, Any]:
    from assoc import scan

    settings = Settings(cache_dir=None)
    bundle = read_bundle(bundle_dir)
    chosen = random.Random(seed).sample(sorted(bundle.stores), held)

    if not db.exists():
        with IndexStore.open(db, create=True) as index:
            index.add_bundle(without(bundle, set(chosen)), settings)
    records = {r.store.store_id: r for r in records_of(bundle)}
    tally: dict[str, Any] = {"pairs_scan": 0, "pairs_check": 0, "pairs_both": 0, "operator_score_equal": 0,
                             "linked_equal": 0, "operator_score_max_diff": 0.0, "overlap_abs_error": [],
                             "check_ms": []}
    with IndexStore.open(db) as index:
        for store_id in chosen:
            direct = {(p.store_a, p.store_b): p for p in scan(without(bundle, set(chosen) - {store_id}), settings).pairs
                      if store_id in (p.store_a, p.store_b) and "via:cluster" not in p.reasons}
            start = time.perf_counter()
            checked = {(p.store_a, p.store_b): p for p in check_store(index, records[store_id], settings).pairs}
            tally["check_ms"].append(1000 * (time.perf_counter() - start))
            tally["pairs_scan"] += len(direct)
            tally["pairs_check"] += len(checked)
            for pair in set(direct) & set(checked):
                a, b = direct[pair], checked[pair]
                tally["pairs_both"] += 1
                diff = abs(a.operator_score - b.operator_score)
                tally["operator_score_equal"] += diff < 1e-9
                tally["operator_score_max_diff"] = round(max(tally["operator_score_max_diff"], diff), 6)
                tally["linked_equal"] += a.linked == b.linked
                tally["overlap_abs_error"].append(abs((a.catalog_overlap or 0.0) - (b.catalog_overlap or 0.0)))
    errors = tally.pop("overlap_abs_error")
    tally["overlap_mae"] = round(statistics.fmean(errors), 4) if errors else 0.0
    tally["overlap_max_error"] = round(max(errors), 4) if errors else 0.0
    tally["check_ms"] = round(statistics.median(tally["check_ms"]), 1)
    return tally


def chosen(args: argparse.Namespace, count: int, bundle: Bundle | None) -> list[dict[str, Any]]:
    if bundle is not None:
        return new_stores(bundle, args.db, count, args.listings, args.seed)
    return candidates(args.db, count, args.listings, args.seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, help="Build --db from this bundle first, if --db does not exist.")
    parser.add_argument("--checks", type=int, default=300)
    parser.add_argument("--listings", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    parser.add_argument("--accuracy", type=int, metavar="N", help="Compare N held-out stores' checks with scans.")
    parser.add_argument("--warmup", type=int, default=5, help="Checks (of other candidates) before measuring.")
    parser.add_argument("--no-gc-freeze", action="store_true",
                        help="In-process: leave the garbage collector as it is after the warm-up.")
    parser.add_argument("--servers", type=int, default=1, help="Server processes the load phase's clients share.")
    parser.add_argument("--no-prewarm", action="store_true",
                        help="In-process: read listing tables from the file (the server prewarms regardless).")
    parser.add_argument("--profile", type=int, metavar="N", help="Profile N in-process checks (cProfile) and stop.")
    parser.add_argument("--hold-out", type=int, metavar="N",
                        help="Build --db from --bundle without N stores of --listings listings or more, and check "
                             "those stores as they are (new arrivals) rather than copies of indexed stores.")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_average_start": os.getloadavg()}}
    if args.accuracy:
        if args.bundle is None:
            raise SystemExit("--accuracy needs --bundle")
        figures["accuracy"] = accuracy(args.bundle, args.db, args.accuracy, args.seed)
        print("accuracy", json.dumps(figures["accuracy"]), flush=True)
        return
    arrivals = None
    if args.hold_out:
        if args.bundle is None:
            raise SystemExit("--hold-out needs --bundle")
        arrivals = read_bundle(args.bundle)
        if not args.db.exists():
            with IndexStore.open(args.db, create=True) as index:
                index.add_bundle(without(arrivals, held_out(arrivals, args.listings, args.hold_out, HOLD_OUT_SEED)),
                                 Settings())
    if not args.db.exists():
        if args.bundle is None:
            raise SystemExit(f"{args.db} does not exist: give --bundle to build it")
        figures["build"] = build(args.bundle, args.db)
        print("build", json.dumps(figures["build"]), flush=True)
    if args.profile:
        # Warm-up candidates other than the profiled ones (the seed gives the same candidates every time).
        profile(args.db, chosen(args, args.warmup + args.profile, arrivals),
                warmup=args.warmup, memory=not args.no_prewarm)
        return
    # The warm-up checks are other candidates than the measured ones (a check of the same store twice would
    # find everything it reads kept in memory).
    records = chosen(args, args.checks + args.warmup, arrivals)
    warm, records = records[args.checks:], records[:args.checks]
    figures["in_process"] = in_process(args.db, warm + records, warmup=len(warm), freeze=not args.no_gc_freeze,
                                       memory=not args.no_prewarm)
    print("in-process", json.dumps(figures["in_process"]), flush=True)
    servers = [_Server(args.db)]
    servers += [_Server(args.db, servers[0].token) for _ in range(args.servers - 1)]
    figures["server_memory_mb_after_start"] = servers[0].memory_mb()  # listening: prewarmed
    print("server memory after start (MB)", json.dumps(figures["server_memory_mb_after_start"]), flush=True)
    try:
        for server in servers:
            connection = server.connection()
            for body in warm:
                server.check(connection, json.dumps(body).encode())
            connection.close()
        figures["http"] = over_http(servers[0], records, warmup=0)
        print("http", json.dumps(figures["http"]), flush=True)
        if args.clients:   # --clients 0: latency only
            figures["load"] = load(servers, records, args.clients, args.duration)
            print("load", json.dumps(figures["load"]), flush=True)
    finally:
        figures["server_exit_code"] = max(server.stop() for server in servers)
    figures["machine"]["load_average_end"] = os.getloadavg()
    print("server exit code after SIGTERM", figures["server_exit_code"], "; machine", json.dumps(figures["machine"]))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
