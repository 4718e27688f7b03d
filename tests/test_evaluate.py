"""assoc.evaluate against hand-computed figures, scikit-learn's curve and ../shared/bench/score.py; CLI wiring.

The hand-made case (figures worked out on paper, in the comments of `_write_case`):

    truth linked: S1-S2, S1-S3, S2-S3 (operator_strong), S4-S5 (operator_evasive), S5-S6 (overlap_only)
    pairs.csv:    S2-S1 0.9 linked, S1-S3 0.8 linked, S3-S2 0.3 not, S4-S5 0.6 linked,
                  S1-S4 0.7 linked (wrong), S6-S9 0.2 not (S9 unknown); S5-S6 absent
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import re
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from assoc.cli import main
from assoc.evaluate import (
    EvaluationInputError,
    ScanPairs,
    Truth,
    compare,
    evaluate,
    pair_key,
    plot_precision_recall,
    precision_recall_curve,
    read_pairs,
    read_truth,
)
from fixtures.market import generate

ROOT = Path(__file__).resolve().parents[1]
SCORER = ROOT.parent / "shared" / "bench" / "score.py"

TRUTH_STORES = "store_id,operator_id,operator_style\nS1,OP1,normal\nS2,OP1,normal\nS3,OP1,normal\n" \
               "S4,OP2,evasive\nS5,OP2,evasive\nS6,OP3,single\nS7,OP4,single\n"
TRUTH_LINKED = "store_a,store_b,why,true_overlap,shared\nS1,S2,operator_strong,0.5,phone\n" \
               "S1,S3,operator_strong,0.4,email\nS2,S3,operator_strong,0.1,phone\n" \
               "S4,S5,operator_evasive,0.0,mac\nS5,S6,overlap_only,0.35,\n"
# BOM, CRLF, extra columns in another order, pairs in either order, three spellings of true.
PAIRS = ("\ufeffscore,store_b,linked,store_a,reasons\r\n"
         "0.9,S1,TRUE,S2,shared:phone\r\n"
         "0.8,S3,yes,S1,shared:email\r\n"
         "0.3,S2,false,S3,weak:ip\r\n"
         "0.6,S5,1,S4,shared:mac\r\n"
         "0.7,S4,true,S1,shared:address\r\n"
         "0.2,S9,no,S6,weak:ip\r\n")


def _write_case(root: Path, pairs: str = PAIRS, linked: str = TRUTH_LINKED, stores: str = TRUTH_STORES
                ) -> tuple[Path, Path]:
    out, truth = root / "out", root / "market" / "truth"
    out.mkdir(parents=True)
    truth.mkdir(parents=True)
    (out / "pairs.csv").write_bytes(pairs.encode("utf-8"))
    if linked is not None:
        (truth / "linked.csv").write_text(linked, encoding="utf-8")
    if stores is not None:
        (truth / "stores.csv").write_text(stores, encoding="utf-8")
    return out, truth


def _run(*args: str):
    return CliRunner().invoke(main, ["evaluate", *args])


# --------------------------------------------------------------------------- library: hand-made case

def test_pairwise_figures_by_hand(tmp_path):
    out, truth = _write_case(tmp_path)
    result = evaluate(out, truth)
    # linked: S1-S2, S1-S3, S4-S5 right; S1-S4 wrong; S2-S3 and S5-S6 missed
    assert (result.pairwise.tp, result.pairwise.fp, result.pairwise.fn) == (3, 1, 2)
    assert result.pairwise.precision == pytest.approx(3 / 4)
    assert result.pairwise.recall == pytest.approx(3 / 5)
    assert result.pairwise.f1 == pytest.approx(2 / 3)  # 2 * 0.75 * 0.6 / 1.35
    assert (result.truth_stores, result.truth_linked) == (7, 5)
    assert (result.pair_rows, result.distinct_pairs, result.linked_pairs) == (6, 6, 4)


def test_recall_by_why_by_hand(tmp_path):
    out, truth = _write_case(tmp_path)
    by_why = evaluate(out, truth).recall_by_why
    assert list(by_why) == ["operator_strong", "operator_evasive", "overlap_only"]
    assert [(r.found, r.total) for r in by_why.values()] == [(2, 3), (1, 1), (0, 1)]
    assert by_why["operator_strong"].recall == pytest.approx(2 / 3)


def test_curve_points_and_average_precision_by_hand(tmp_path):
    out, truth = _write_case(tmp_path)
    curve = evaluate(out, truth).curve
    # threshold: (tp, fp) of score >= threshold; recall over the 5 truth pairs
    expected = [(0.9, 1, 0), (0.8, 2, 0), (0.7, 2, 1), (0.6, 3, 1), (0.3, 4, 1), (0.2, 4, 2)]
    assert [(p.threshold, p.tp, p.fp) for p in curve.points] == expected
    assert [p.precision for p in curve.points] == pytest.approx([1, 1, 2 / 3, 3 / 4, 4 / 5, 4 / 6])
    assert [p.recall for p in curve.points] == pytest.approx([0.2, 0.4, 0.4, 0.6, 0.8, 0.8])
    # S5-S6 is absent (score 0): the curve stops at recall 0.8
    assert curve.max_recall == pytest.approx(0.8)
    assert (curve.truth_pairs, curve.unscored_truth_pairs) == (5, 1)
    assert curve.average_precision == pytest.approx(0.2 * 1 + 0.2 * 1 + 0.2 * 3 / 4 + 0.2 * 4 / 5)  # 0.71


def test_a_listed_score_of_zero_is_no_threshold(tmp_path):
    # S5-S6 listed with score 0 is the same as absent: predicting it would mean predicting every pair
    out, truth = _write_case(tmp_path, pairs=PAIRS + "0,S6,false,S5,\r\n0.0,S7,false,S1,\r\n")
    curve = evaluate(out, truth).curve
    assert [p.threshold for p in curve.points] == [0.9, 0.8, 0.7, 0.6, 0.3, 0.2]
    assert curve.unscored_truth_pairs == 1
    assert curve.max_recall == pytest.approx(0.8)


def test_unknown_store_ids_are_counted_not_fatal(tmp_path):
    out, truth = _write_case(tmp_path)
    result = evaluate(out, truth)
    assert result.unknown_store_ids == ("S9",)
    assert result.unknown_pairs == 1
    assert any("S9" in w and "1 store id(s) not in" in w for w in result.warnings)


def test_unknown_linked_pair_counts_as_false_positive(tmp_path):
    out, truth = _write_case(tmp_path, pairs="store_a,store_b,score,linked\nX1,X2,0.9,true\nS1,S2,0.8,true\n")
    result = evaluate(out, truth)
    assert (result.pairwise.tp, result.pairwise.fp) == (1, 1)
    assert result.unknown_store_ids == ("X1", "X2")


def test_duplicates_take_any_linked_and_the_highest_score_and_self_pairs_are_dropped(tmp_path):
    pairs = "store_a,store_b,score,linked\nS1,S2,0.4,false\nS2,S1,0.7,true\nS1,S2,0.5,false\nS3,S3,0.9,true\n"
    pairs_path = _write_case(tmp_path, pairs=pairs)[0] / "pairs.csv"
    scan_pairs = read_pairs(pairs_path)
    assert dict(scan_pairs.scores) == {("S1", "S2"): 0.7}
    assert scan_pairs.linked == {("S1", "S2")}
    assert (scan_pairs.rows, scan_pairs.duplicate_rows, scan_pairs.self_pairs) == (4, 2, 1)


def test_truth_folder_or_its_parent(tmp_path):
    out, truth = _write_case(tmp_path)
    assert read_truth(truth.parent).folder == truth
    assert evaluate(out, truth.parent).pairwise == evaluate(out, truth).pairwise


def test_empty_scan_scores_zero_without_crashing(tmp_path):
    out, truth = _write_case(tmp_path, pairs="store_a,store_b,score,linked\n")
    result = evaluate(out, truth)
    assert (result.pairwise.tp, result.pairwise.fp, result.pairwise.fn) == (0, 0, 5)
    assert result.pairwise.f1 == 0.0
    assert result.curve.points == () and result.curve.average_precision == 0.0
    assert plot_precision_recall(result, tmp_path / "empty.png").is_file()


def test_bad_values_are_all_reported_with_their_lines(tmp_path):
    pairs = "store_a,store_b,score,linked\nS1,S2,high,true\nS1,S3,0.5,maybe\nS1,S4,1.5,true\nS4,S5,nan,false\n"
    out, truth = _write_case(tmp_path, pairs=pairs)
    with pytest.raises(EvaluationInputError) as caught:
        evaluate(out, truth)
    message = str(caught.value)
    assert "4 problems" in message
    assert "pairs.csv line 2: score 'high' is not a number between 0 and 1" in message
    assert "pairs.csv line 3: linked 'maybe' is neither true nor false" in message
    assert "line 4: score '1.5'" in message and "line 5: score 'nan'" in message
    assert "run `assoc scan` again" in message


def test_missing_truth_column_names_the_file(tmp_path):
    out, truth = _write_case(tmp_path, linked="store_a,store_b\nS1,S2\n")
    with pytest.raises(EvaluationInputError, match=r"linked\.csv: missing column\(s\) why"):
        evaluate(out, truth)


# --------------------------------------------------------------------------- library: oracles

def test_curve_matches_scikit_learn_on_random_cases():
    from sklearn.metrics import average_precision_score
    from sklearn.metrics import precision_recall_curve as sk_curve

    rng = random.Random(20240601)
    stores = [f"S{i}" for i in range(30)]
    for _ in range(40):
        universe = list(combinations(stores, 2))
        truth = set(rng.sample(universe, rng.randint(1, 40)))
        listed = rng.sample(universe, rng.randint(2, 120))
        scores = {pair: rng.choice([0.1, 0.25, 0.5, 0.75, 0.9, round(rng.random(), 2) or 0.01]) for pair in listed}
        labels = [pair in truth for pair in scores]
        if not any(labels) or all(labels):
            continue
        curve = precision_recall_curve(scores, truth)
        # scikit-learn sees only the listed pairs; the unlisted truth pairs scale every recall down
        listed_share = sum(labels) / len(truth)
        precision, recall, thresholds = sk_curve(labels, list(scores.values()))
        ours = {p.threshold: (p.precision, p.recall) for p in curve.points}
        assert sorted(ours) == sorted(thresholds.tolist())
        for p, r, t in zip(precision[:-1], recall[:-1], thresholds, strict=True):
            assert ours[t] == pytest.approx((p, r * listed_share))
        assert curve.average_precision == pytest.approx(
            average_precision_score(labels, list(scores.values())) * listed_share)
        assert curve.unscored_truth_pairs == len(truth) - sum(labels)


def test_pairwise_matches_a_brute_force_count():
    rng = random.Random(7)
    stores = [f"S{i:02d}" for i in range(12)]
    universe = list(combinations(stores, 2))
    for _ in range(30):
        truth_pairs = rng.sample(universe, 10)
        truth = Truth(folder=Path("t"), stores=frozenset(stores),
                      linked={p: rng.choice(["operator_strong", "overlap_only"]) for p in truth_pairs})
        linked = set(rng.sample(universe, rng.randint(0, 20)))
        scan_pairs = ScanPairs(path=Path("p"), rows=len(linked), scores={p: 0.9 for p in linked},
                               linked=frozenset(linked))
        result = compare(scan_pairs, truth)
        tp = sum(1 for p in universe if p in linked and p in truth.linked)
        fp = sum(1 for p in universe if p in linked and p not in truth.linked)
        fn = sum(1 for p in universe if p not in linked and p in truth.linked)
        assert (result.pairwise.tp, result.pairwise.fp, result.pairwise.fn) == (tp, fp, fn)
        for why, recall in result.recall_by_why.items():
            assert recall.found == sum(1 for p, w in truth.linked.items() if w == why and p in linked)


# --------------------------------------------------------------------------- plot

def test_curve_png_is_a_valid_png(tmp_path):
    out, truth = _write_case(tmp_path)
    path = plot_precision_recall(evaluate(out, truth), tmp_path / "sub" / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 400 and image.height >= 300
        # not a blank canvas: the curve, the ceiling line and the decision marker put colour on it
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 10


# --------------------------------------------------------------------------- CLI wiring

def test_cli_json_matches_the_library(tmp_path):
    out, truth = _write_case(tmp_path)
    result = _run(str(out), "--truth", str(truth), "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["pairwise"] == {"tp": 3, "fp": 1, "fn": 2, "precision": pytest.approx(0.75),
                                   "recall": pytest.approx(0.6), "f1": pytest.approx(2 / 3)}
    assert figures["recall_by_why"]["operator_strong"] == {"found": 2, "total": 3, "recall": pytest.approx(2 / 3)}
    assert figures["recall_by_why"]["overlap_only"]["found"] == 0
    assert figures["curve"]["average_precision"] == pytest.approx(0.71)
    assert figures["curve"]["max_recall"] == pytest.approx(0.8)
    assert figures["curve"]["path"] == str(out / "precision_recall.png")
    assert figures["unknown_store_ids"] == {"count": 1, "examples": ["S9"], "pairs": 1}
    assert (out / "precision_recall.png").is_file()


def test_cli_text_output(tmp_path):
    out, truth = _write_case(tmp_path)
    result = _run(str(out), "--truth", str(truth))
    assert result.exit_code == 0, result.output
    assert "precision 0.7500  recall 0.6000  F1 0.6667  (tp 3, fp 1, fn 2)" in result.stdout
    assert "operator_evasive        1 / 1      1.0000" in result.stdout
    assert "average precision  0.7100" in result.stdout
    assert "recall tops out at 0.8000 (1 truth pairs" in result.stdout
    assert "unknown store ids  1 (S9)" in result.stdout
    assert "warning:" in result.stderr and "S9" in result.stderr


def test_cli_quiet_and_curve_path(tmp_path):
    out, truth = _write_case(tmp_path)
    curve = tmp_path / "plots" / "pr.png"
    result = _run(str(out), "--truth", str(truth), "--quiet", "--curve", str(curve))
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert curve.is_file() and not (out / "precision_recall.png").exists()


def test_cli_missing_truth_linked_exits_2(tmp_path):
    out, truth = _write_case(tmp_path, linked=None)
    result = _run(str(out), "--truth", str(truth))
    assert result.exit_code == 2
    assert f"{truth / 'linked.csv'}: does not exist" in result.stderr
    assert "--truth must be the truth/ folder" in result.stderr
    assert "Traceback" not in result.output


def test_cli_pairs_without_store_a_exits_2(tmp_path):
    out, truth = _write_case(tmp_path, pairs="store,store_b,score,linked\nS1,S2,0.9,true\n")
    result = _run(str(out), "--truth", str(truth))
    assert result.exit_code == 2
    assert f"{out / 'pairs.csv'}: missing column(s) store_a;" in result.stderr
    assert "header must name store_a, store_b, score, linked (found: store, store_b, score, linked)" in result.stderr


def test_cli_missing_pairs_exits_2(tmp_path):
    out, truth = _write_case(tmp_path)
    (out / "pairs.csv").unlink()
    result = _run(str(out), "--truth", str(truth))
    assert result.exit_code == 2
    assert "pairs.csv: does not exist; OUTDIR must be the output folder of `assoc scan" in result.stderr


def test_cli_unwritable_curve_exits_3(tmp_path):
    out, truth = _write_case(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    result = _run(str(out), "--truth", str(truth), "--curve", str(blocker / "pr.png"))
    assert result.exit_code == 3
    assert "the curve could not be written" in result.stderr


# --------------------------------------------------------------------------- end to end on the committed example

def _load_scorer():
    spec = importlib.util.spec_from_file_location("bench_score", SCORER)
    scorer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scorer)
    return scorer


def test_scan_of_the_example_bundle_against_its_planted_truth(tmp_path):
    # fixtures/market.py returns its truth instead of writing truth files: regenerate the committed
    # example (README of examples/ gives the command) and write the truth in the benchmark's format.
    regenerated = tmp_path / "regenerated"
    planted = generate(regenerated, stores=40, seed=1, images=True)
    for name in ("stores.csv", "signals.csv", "products.csv"):
        assert (regenerated / name).read_bytes() == (ROOT / "examples" / "bundle" / name).read_bytes(), name
    truth = tmp_path / "truth"
    truth.mkdir()
    with open(truth / "stores.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["store_id", "operator_id"])
        writer.writerows(sorted(planted.operator_of.items()))
    with open(truth / "linked.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["store_a", "store_b", "why", "true_overlap", "shared"])
        writer.writerows([a, b, "operator_strong", "", ""] for a, b in sorted(planted.linked))

    out = tmp_path / "out"
    scanned = CliRunner().invoke(main, ["scan", str(ROOT / "examples" / "bundle"), "--out", str(out), "--no-cache",
                                        "--quiet"])
    assert scanned.exit_code == 0, scanned.output
    result = _run(str(out), "--truth", str(truth), "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)

    with open(out / "pairs.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    linked = {pair_key(r["store_a"], r["store_b"]) for r in rows if r["linked"].lower() == "true"}
    assert figures["truth"] == {"stores": 40, "linked_pairs": len(planted.linked)}
    assert figures["pairwise"]["tp"] == len(linked & planted.linked)
    assert figures["pairwise"]["fp"] == len(linked - planted.linked)
    assert figures["pairwise"]["fn"] == len(planted.linked - linked)
    assert figures["unknown_store_ids"]["count"] == 0
    assert 0 < figures["curve"]["average_precision"] <= figures["curve"]["max_recall"] <= 1
    with Image.open(out / "precision_recall.png") as image:
        assert image.format == "PNG"

    if SCORER.is_file():  # the benchmark's own scorer must agree
        reference = _load_scorer().score(str(truth), str(out))
        for name in ("tp", "fp", "fn", "precision", "recall", "f1"):
            assert figures["pairwise"][name] == pytest.approx(reference["pairwise"][name]), name
        assert figures["recall_by_why"]["operator_strong"]["found"] == \
            reference["recall_by_why"]["operator_strong"]["found"]


def _readme_evaluate_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Evaluate a scan", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ")]


@pytest.mark.skipif(not (SCORER.parent / "market.py").is_file(), reason="../shared/bench is not here")
def test_readme_evaluate_commands_run(tmp_path, monkeypatch):
    generate_market, scan_and_evaluate = _readme_evaluate_commands()
    words = generate_market.split()
    assert words[:2] == ["python", "../shared/bench/market.py"]
    # a smaller market than the README's, so the test is quick; the commands are the README's own
    words[words.index("--stores") + 1] = "30"
    words[1] = str(SCORER.parent / "market.py")
    monkeypatch.chdir(tmp_path)
    subprocess.run([sys.executable, *words[1:], "--image-fraction", "0", "--quiet"], check=True, timeout=240)
    for command in scan_and_evaluate.split("&&"):
        args = command.split()
        assert args[0] == "assoc"
        extra = ["--no-cache", "--quiet"] if args[1] == "scan" else []
        result = CliRunner().invoke(main, [*args[1:], *extra])
        assert result.exit_code == 0, result.output
    assert re.search(r"pairwise\s+precision \d\.\d{4}\s+recall \d\.\d{4}\s+F1 \d\.\d{4}", result.stdout)
    assert (tmp_path / "out" / "precision_recall.png").is_file()
