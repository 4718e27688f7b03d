"""Login-log collector throughput and peak memory: lines per second and peak RSS on generated logs.

    python benchmarks/collect_bench.py                          # 0.5 and 5 million combined-log lines
    python benchmarks/collect_bench.py --lines 1000000 --format csv --gzip

Each log is generated once into --workdir (reused when present): `--stores` stores log in over 30
days, each from a few home IPs (and, in CSV, a device and a MAC), in time order like a real log.
The collector runs as `assoc collect logins` in a child process, so wall time and peak RSS
(resource.getrusage in the child) are the command's own. Peak memory that stays flat from the
small log to the large one is the point: it grows with distinct (store, kind, value) keys, not lines.
"""

from __future__ import annotations

import argparse
import gzip
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

# Runs the CLI in a child and prints that child's own peak RSS (KiB on Linux) and CPU seconds on stderr's
# last line: CPU time is the figure to compare when other work shares the machine.
_CHILD = (
    "import resource, sys\n"
    "from assoc.cli import main\n"
    "main(sys.argv[1:], standalone_mode=False)\n"
    "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
    "print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime, file=sys.stderr)\n"
)
_START = datetime(2024, 5, 1, tzinfo=UTC).timestamp()
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def generate(path: Path, lines: int, stores: int, fmt: str, seed: int) -> None:
    """Write a log of `lines` login lines in time order (gzip when the name ends in .gz)."""
    rng = random.Random(seed)
    homes = [[f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
              for _ in range(rng.randint(1, 3))] for _ in range(stores)]
    devices = [f"DEV-{i:05d}-{rng.randint(0, 9)}" for i in range(stores)]
    macs = [":".join(f"{rng.randint(0, 255):02x}" for _ in range(6)) for _ in range(stores)]
    step = 30 * 86400 / lines
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as handle:
        if fmt == "csv":
            handle.write("store_id,ip,time,device_id,mac\n")
        batch = []
        for i in range(lines):
            store = rng.randrange(stores)
            ip = rng.choice(homes[store])
            seconds = _START + i * step
            if fmt == "csv":
                stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                batch.append(f"S{store:05d},{ip},{stamp},{devices[store]},{macs[store]}\n")
            else:
                moment = datetime.fromtimestamp(seconds, UTC)
                stamp = f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year}:{moment:%H:%M:%S} +0000"
                batch.append(f'{ip} - S{store:05d} [{stamp}] "GET /admin/orders?page={i % 50} HTTP/1.1" 200 '
                             f'{rng.randint(200, 90000)} "https://seller.example.com/admin" '
                             '"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0"\n')
            if len(batch) >= 50_000:
                handle.writelines(batch)
                batch.clear()
        handle.writelines(batch)


def baseline() -> tuple[float, float]:
    """(CPU seconds, peak RSS in MiB) of the command doing nothing: the interpreter and its imports."""
    done = subprocess.run([sys.executable, "-c", _CHILD, "collect", "--help"], check=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    peak_kib, cpu = done.stderr.strip().splitlines()[-1].split()
    return float(cpu), int(peak_kib) / 1024.0


def run(log: Path, out: Path) -> tuple[float, float, float, int]:
    """Collect `log` into a fresh bundle `out`: (wall seconds, CPU seconds, peak RSS in MiB, signal rows)."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, "collect", "logins", str(log), "--out", str(out),
                           "--quiet"], check=True, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    peak_kib, cpu = done.stderr.strip().splitlines()[-1].split()
    with open(out / "signals.csv", encoding="utf-8") as handle:
        rows = sum(1 for _ in handle) - 1
    return seconds, float(cpu), int(peak_kib) / 1024.0, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[500_000, 5_000_000])
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--format", choices=("combined", "csv"), default="combined")
    parser.add_argument("--gzip", action="store_true", help="gzip the generated log")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "assoc-collect-bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cpu, peak = baseline()
    print(f"baseline (start-up and imports, no input): {cpu:.1f} CPU s, peak RSS {peak:.0f} MB")
    print(f"{'lines':>10} {'format':>11} {'MB in':>6} {'wall s':>7} {'lines/s':>8} {'CPU s':>7} {'lines/CPU s':>11} "
          f"{'peak RSS MB':>11} {'signal rows':>11}")
    for lines in args.lines:
        suffix = ".log" if args.format == "combined" else ".csv"
        log = args.workdir / f"logins-{lines}-{args.stores}-{args.seed}{suffix}{'.gz' if args.gzip else ''}"
        if not log.exists():
            partial = log.with_name(log.name + ".partial")
            generate(partial if not args.gzip else partial.with_name(partial.name + ".gz"), lines, args.stores,
                     args.format, args.seed)
            (partial if not args.gzip else partial.with_name(partial.name + ".gz")).rename(log)
        seconds, cpu, peak, rows = run(log, args.workdir / "bundle")
        name = args.format + ("+gz" if args.gzip else "")
        print(f"{lines:>10} {name:>11} {log.stat().st_size / 1e6:>6.0f} {seconds:>7.1f} {lines / seconds:>8.0f} "
              f"{cpu:>7.1f} {lines / cpu:>11.0f} {peak:>11.0f} {rows:>11}", flush=True)


if __name__ == "__main__":
    main()
