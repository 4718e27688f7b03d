"""Crash test of `assoc index add`: kill -9 at random points, then check integrity and that a rerun completes.

    python benchmarks/crash_bench.py --bundle /tmp/bench/m2k/bundle --trials 20 --seed 1

For each trial: a fresh index file (or, with --update-from, a copy of an index of another bundle, so
the killed run is replacing stores); `assoc index add` in a subprocess killed with SIGKILL after a
random delay in [0, the time an uninterrupted add takes]; `PRAGMA integrity_check`; the add run again
to completion; and its content compared with an uninterrupted add's (IndexStore.dump: every row of
every table). Prints one line per trial and a summary; exits 1 if any trial failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from assoc.store import IndexStore

_LAUNCH = "from assoc.cli import main; main()"


def add(bundle: Path, db: Path, batch_size: int) -> subprocess.Popen:
    # No image hash cache: a killed run must not leave state outside the index that the rerun depends on.
    return subprocess.Popen([sys.executable, "-c", _LAUNCH, "index", "add", str(bundle), "--db", str(db), "-q",
                             "--no-cache", "--batch-size", str(batch_size)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def digest(db: Path) -> str:
    with IndexStore.open(db) as index:
        dump = index.dump()
    return hashlib.sha256(json.dumps(dump, default=str).encode()).hexdigest()


def wait_for_writes(process: subprocess.Popen, db: Path, existed: bool) -> float:
    """Wait until the add starts writing (the file exists, or its WAL for an existing index); returns when."""
    marker = Path(f"{db}-wal") if existed else db
    while process.poll() is None and not marker.exists():
        time.sleep(0.01)
    return time.perf_counter()


def committed(db: Path) -> str:
    """What the killed run left: stores committed and the catalog state."""
    if not db.exists():
        return "nothing committed"
    with sqlite3.connect(db) as connection:
        try:
            stores = connection.execute("SELECT count(*) FROM stores").fetchone()[0]
            catalog = connection.execute("SELECT value FROM meta WHERE key = 'catalog'").fetchone()[0]
        except sqlite3.Error:
            return "empty file"
    return f"{stores} stores committed, catalog {catalog}"


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--update-from", type=Path, help="Kill adds that update an index of this other bundle.")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=20, help="Stores per transaction (small: many states).")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="assoc-crash-"))
    try:
        start_db = None
        if args.update_from:
            start_db = work / "start.db"
            subprocess.run([sys.executable, "-c", _LAUNCH, "index", "add", str(args.update_from), "--db",
                            str(start_db), "-q", "--no-cache"], check=True)
        reference = work / "reference.db"
        if start_db:
            shutil.copy(start_db, reference)
        began = time.perf_counter()
        process = add(args.bundle, reference, args.batch_size)
        opened = wait_for_writes(process, reference, start_db is not None) - began
        if process.wait() != 0:
            raise SystemExit("the uninterrupted add failed")
        full = time.perf_counter() - began - opened
        expected = digest(reference)
        print(f"uninterrupted add: {opened:.1f} s to read the bundle, {full:.1f} s writing; "
              f"content {expected[:16]}", flush=True)
        failures = 0
        for trial in range(1, args.trials + 1):
            db = work / f"trial{trial}.db"
            if start_db:
                shutil.copy(start_db, db)
            delay = rng.uniform(0.0, full)
            process = add(args.bundle, db, args.batch_size)
            wait_for_writes(process, db, start_db is not None)
            time.sleep(delay)
            killed = process.poll() is None
            if killed:
                process.send_signal(signal.SIGKILL)
            process.wait()
            check = integrity(db) if db.exists() else "ok (no file yet)"
            state = committed(db)
            rerun = add(args.bundle, db, args.batch_size)
            code = rerun.wait()
            if code != 0:
                print(rerun.stderr.read().decode("utf-8", "replace")[-2000:], flush=True)
            same = code == 0 and digest(db) == expected
            ok = check.startswith("ok") and same
            failures += not ok
            print(f"trial {trial:2d}: killed {delay:5.1f} s into the writes{'' if killed else ' (had finished)'}, "
                  f"{state}; integrity {check}; rerun exit {code}; identical to uninterrupted: {same}", flush=True)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        print(f"{args.trials - failures} of {args.trials} trials passed")
        sys.exit(1 if failures else 0)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
