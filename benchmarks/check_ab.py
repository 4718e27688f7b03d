"""CPU of a check: assoc/check.py as committed at REV against the working tree's, interleaved in one process.

    python benchmarks/check_ab.py --db /tmp/bench/m20k-v2.db [--rev HEAD] [--checks 150] [--rounds 1]

On a shared host the speed of a core moves by a third between minutes, so two benchmark runs of
two versions minutes apart compare the minutes as much as the code. Here both versions run in one
process on the same new candidates (check_bench.candidates), each prewarmed and warmed up alike,
taking turns on every candidate (which goes first alternates); the CPU time of each is summed.
A first pass over new candidates measures cold checks, the case of an ERP checking stores the
server has not met; --rounds 2 and more also measure them again (what is kept from one check for
the next). Prints both means per round and over all, their ratio, and whether the two versions
gave identical answers.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from assoc import Settings  # noqa: E402
from assoc import check as current  # noqa: E402
from assoc.server import YOUNG_GC_THRESHOLD  # noqa: E402
from assoc.store import IndexStore  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]


def committed_check(rev: str) -> ModuleType:
    """assoc/check.py as of `rev`, as a module of the assoc package (its relative imports resolve)."""
    source = subprocess.run(["git", "show", f"{rev}:assoc/check.py"], cwd=_ROOT, check=True,
                            capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("assoc._check_at_rev", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "assoc"
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    exec(compile(source, f"{rev}:assoc/check.py", "exec"), module.__dict__)  # noqa: S102 - our own source
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--checks", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--listings", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    from check_bench import candidates

    versions = {args.rev: committed_check(args.rev), "working tree": current}
    records = candidates(args.db, args.warmup + args.checks, args.listings, args.seed)
    settings = Settings(cache_dir=None)
    cpu = {(round_number, name): 0.0 for round_number in range(args.rounds) for name in versions}
    answers = {name: hashlib.sha256() for name in versions}
    with IndexStore.open(args.db) as index:
        for module in versions.values():
            module.prewarm(index)
            for record in records[:args.warmup]:
                module.check_store(index, module.records_of(module.candidate_from_record(
                    record, root=args.db.parent))[0], settings)
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        for round_number in range(args.rounds):
            for number, record in enumerate(records[args.warmup:]):
                order = list(versions.items())
                if (number + round_number) % 2:
                    order.reverse()
                for name, module in order:
                    started = time.process_time()
                    result = module.check_store(index, module.records_of(module.candidate_from_record(
                        record, root=args.db.parent))[0], settings)
                    cpu[round_number, name] += time.process_time() - started
                    answers[name].update(json.dumps(result.to_dict(), sort_keys=True).encode())
    for round_number in range(args.rounds):
        base, new = (1000 * cpu[round_number, name] / args.checks for name in versions)
        print(f"round {round_number + 1}: {args.rev} {base:.2f} ms, working tree {new:.2f} ms of CPU per check")
    base, new = (1000 * sum(cpu[r, name] for r in range(args.rounds)) / (args.checks * args.rounds)
                 for name in versions)
    same = len({digest.digest() for digest in answers.values()}) == 1
    print(f"{args.rev}: {base:.2f} ms, working tree: {new:.2f} ms of CPU per check; ratio {new / base:.3f}; "
          f"identical answers: {same}")


if __name__ == "__main__":
    main()
