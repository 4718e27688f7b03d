"""Does a model trained on one generated market carry over to others? Rule table vs learned model.

    python benchmarks/model_transfer.py [--workdir /tmp/assoc-learning]

Trains a LinearModel on every candidate pair of the default-mix 2,000-store training bundle of
benchmarks/learning_curve.py (seed 51, labelled by its truth), then decides each test bundle
with the rule table and with the model and scores the linked pairs against linked.csv. Test
bundles: the public sample (pictures compared) and the bench bundles named on the command line
as NAME=BUNDLE_DIR:TRUTH_DIR[:images].
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learning_curve import SHARED_BENCH, generate, linked_truth, pairwise  # noqa: E402

from assoc.bundle import read_bundle  # noqa: E402
from assoc.scan import compare  # noqa: E402
from assoc.settings import Settings  # noqa: E402
from models.train import fit, training_set, truth_labels  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/assoc-learning"))
    parser.add_argument("tests", nargs="*", help="NAME=BUNDLE_DIR:TRUTH_DIR[:images]")
    args = parser.parse_args()
    text_only = Settings(use_images=False, cache_dir=None)
    train = generate(args.workdir, 2000, 51, "default")
    weighted = compare(read_bundle(train / "bundle"), text_only).weighted()
    labels = truth_labels(train / "truth", sorted(weighted))
    model = fit(training_set(weighted, labels, f"truth of {train}"), seed=0)
    print(f"trained on {len(labels)} pairs of {train}", flush=True)
    sample = SHARED_BENCH.parent / "samples" / "market-s"
    tests = [("public sample", sample / "bundle", sample / "truth", True)]
    for spec in args.tests:
        name, _, paths = spec.partition("=")
        parts = paths.split(":")
        tests.append((name, Path(parts[0]), Path(parts[1]), len(parts) > 2 and parts[2] == "images"))
    for name, bundle, truth, images in tests:
        settings = Settings(cache_dir=args.workdir / "image-cache") if images else text_only
        comparison = compare(read_bundle(bundle), settings)
        expected = linked_truth(truth)
        print(f"{name}: rules {pairwise(comparison, settings, None, expected)} "
              f"learned {pairwise(comparison, settings, model, expected)}", flush=True)


if __name__ == "__main__":
    main()
