"""Training from reviewer decisions end to end, through the CLI (README "Learned scoring", issue 6 items 1-3).

A seeded generated market goes into an index; a first scan writes the review queue; a reviewer who knows the
generator's truth fills the queue in (one decision per cluster) and decides the suggested pairs one by one;
`assoc train` fits a model on those decisions alone; a scan of the index with that model scores with it and
explains every pair feature by feature.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from assoc.cli import main
from assoc.decisions import decision_labels, load_review
from assoc.scan import compare
from assoc.settings import Settings
from assoc.store import IndexStore
from fixtures.market import generate
from models.features import FEATURE_NAMES
from models.learned import INTERCEPT, LinearModel

SETTINGS = Settings(cache_dir=None)
MODEL_NAME = "market-11"


def _run(*args: object):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _fill_queue(queue: Path, truth) -> int:
    """Decide every cluster of review_queue.csv from the truth; returns the rows decided."""
    with open(queue, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        operators = {truth.operator_of[store] for store in row["members"].split(";")}
        row["decision"] = "confirmed" if len(operators) == 1 else "dismissed"
        row["note"] = "checked against the planted truth"
    with open(queue, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("train-decisions")
    truth = generate(root / "bundle", stores=60, seed=11)
    db = root / "index.db"
    _run("index", "add", root / "bundle", "--db", db, "--no-cache", "-q")
    _run("scan", "--db", db, "--out", root / "first", "--no-cache", "--report", "-q")
    queued = _fill_queue(root / "first" / "review_queue.csv", truth)
    _run("review", "import", "--db", db, root / "first" / "review_queue.csv", "--reviewer", "tester")
    suggested = json.loads(_run("review", "suggest", "--db", db, "-n", "45", "--json").output)
    for row in suggested:
        same = truth.same_operator(row["store_a"], row["store_b"])
        _run("review", "--db", db, "--pair", row["store_a"], row["store_b"], "--decision",
             "confirmed" if same else "dismissed", "--reviewer", "tester")
    model_dir = root / "models" / MODEL_NAME
    figures = json.loads(_run("train", "--db", db, "--out", model_dir, "--json").output)
    summary = json.loads(_run("scan", "--db", db, "--out", root / "second", "--model", model_dir, "--no-cache",
                              "--json").output)
    return {"root": root, "truth": truth, "db": db, "queued": queued, "suggested": suggested,
            "model_dir": model_dir, "figures": figures, "summary": summary}


def _labels_and_evidence(db: Path) -> tuple[dict, dict]:
    with IndexStore.open(db) as index:
        labels = decision_labels(index)
        bundle = index.load_bundle()
        review = load_review(index)
    return labels, compare(bundle, SETTINGS, review=review).weighted()


def test_fifty_decisions_of_both_kinds_are_stored_from_the_truth(session):
    decisions = json.loads(_run("review", "list", "--db", session["db"], "--json").output)
    assert len(decisions) == session["queued"] + len(session["suggested"]) >= 50
    assert {d["reviewer"] for d in decisions} == {"tester"}
    assert sum(d["source"] != "cli" for d in decisions) == session["queued"]  # one per imported queue row
    labels, _ = _labels_and_evidence(session["db"])
    truth = session["truth"]
    assert labels == {pair: truth.same_operator(*pair) for pair in labels}
    assert sum(labels.values()) >= 5 and sum(not label for label in labels.values()) >= 5


def test_train_fits_on_the_decisions_and_writes_the_model_and_its_card(session):
    labels, weighted = _labels_and_evidence(session["db"])
    usable = {pair: label for pair, label in labels.items() if pair in weighted}
    figures = session["figures"]
    assert figures["pairs"] == len(usable) >= 50
    assert figures["positives"] == sum(usable.values())
    model = LinearModel.load(session["model_dir"])
    assert Path(figures["model"]) == session["model_dir"] / "model.json"
    data = json.loads((session["model_dir"] / "model.json").read_text(encoding="utf-8"))
    assert data["features"] == list(FEATURE_NAMES) and len(data["coefficients"]) == len(FEATURE_NAMES)
    assert data["provenance"]["labels"] == f"review decisions in {session['db']}"
    assert all(math.isfinite(c) for c in data["coefficients"])
    # the model separates the pairs it was taught: every confirmed pair above every dismissed one
    confirmed = [model.probability(weighted[p]) for p, label in usable.items() if label]
    dismissed = [model.probability(weighted[p]) for p, label in usable.items() if not label]
    assert min(confirmed) > max(dismissed)
    card = (session["model_dir"] / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert f"review decisions in {session['db']}" in card
    assert f"labelled pairs with evidence: {len(usable)}" in card
    assert all(f"| {name} |" in card for name in FEATURE_NAMES)
    assert "Held-out" in card and "scikit-learn" in card


def test_a_scan_with_the_model_scores_with_it_and_explains_each_feature(session):
    assert session["summary"]["scorer"] == MODEL_NAME
    out = session["root"] / "second"
    model = LinearModel.load(session["model_dir"])
    labels, weighted = _labels_and_evidence(session["db"])
    with open(out / "pairs.csv", encoding="utf-8", newline="") as handle:
        rows = {(r["store_a"], r["store_b"]): r for r in csv.DictReader(handle)}
    records = [json.loads(line) for line in (out / "evidence.jsonl").read_text(encoding="utf-8").splitlines()]
    explained = [r for r in records if r["evidence"]]
    assert len(explained) >= 20
    for record in explained:
        pair = (record["store_a"], record["store_b"])
        terms = record["contributions"]
        assert terms and terms[-1][0] == INTERCEPT
        assert {name for name, _ in terms[:-1]} <= set(FEATURE_NAMES)
        operator_score = float(rows[pair]["operator_score"])
        # the model's probability, not the rule table's
        assert operator_score == pytest.approx(model.probability(weighted[pair]), abs=1e-3)
        assert 1 / (1 + 2 ** -sum(bits for _, bits in terms)) == pytest.approx(operator_score, abs=2e-3)
    # the decisions still act under the model
    for pair, label in labels.items():
        if label:
            assert rows[pair]["linked"] == "true" and "review:confirmed" in rows[pair]["reasons"]
        elif pair in rows and "via:cluster" not in rows[pair]["reasons"]:
            assert rows[pair]["linked"] == "false" and float(rows[pair]["score"]) == 0
    store_a, store_b = explained[0]["store_a"], explained[0]["store_b"]
    shown = json.loads(_run("explain", out, store_a, store_b, "--json").output)
    assert shown["model_contributions"] and shown["model_contributions"][-1]["feature"] == INTERCEPT
