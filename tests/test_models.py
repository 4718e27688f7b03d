"""Learned scoring (issue 6): features, training, the model file, suggestions, and the CLI that uses them."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from assoc.bundle import read_bundle
from assoc.cli import main
from assoc.evidence import Evidence
from assoc.scan import RuleScorer, compare, decide
from assoc.settings import Settings
from assoc.store import IndexStore
from fixtures.market import generate
from models import rules
from models.features import FEATURE_NAMES, pair_features
from models.learned import INTERCEPT, LinearModel, ModelError
from models.suggest import EXPLORE, suggest
from models.train import TrainingError, fit, training_set, truth_labels

SETTINGS = Settings(cache_dir=None)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An 80-store bundle, its truth as the generator's truth folder would hold it, and its comparison."""
    root = tmp_path_factory.mktemp("market")
    truth = generate(root / "bundle", stores=80, seed=3)
    (root / "truth").mkdir()
    with (root / "truth" / "stores.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["store_id", "operator_id"])
        writer.writerows(sorted(truth.operator_of.items()))
    comparison = compare(read_bundle(root / "bundle"), SETTINGS)
    weighted = comparison.weighted()
    labels = truth_labels(root / "truth", sorted(weighted))
    return {"root": root, "truth": truth, "comparison": comparison, "weighted": weighted, "labels": labels}


def _piece(kind: str, level: str = "exact", stores: int = 2, weight: float = 0.0, **more: object) -> Evidence:
    return Evidence(kind=kind, level=level, value=f"{kind}-value", stores=stores, weight=weight, **more)


# ------------------------------------------------------------------------------------------ features

def test_features_are_zero_for_absent_evidence_and_carry_the_rule_weights():
    empty = pair_features([])
    assert len(empty) == len(FEATURE_NAMES)
    assert empty[FEATURE_NAMES.index("rule_logit")] == pytest.approx(rules.PRIOR / 10)
    assert all(value == 0 for name, value in zip(FEATURE_NAMES, empty, strict=True) if name != "rule_logit")

    payout = rules.weigh([_piece("payment_account")])
    features = dict(zip(FEATURE_NAMES, pair_features(payout), strict=True))
    assert features["bits:payment_account"] == pytest.approx(rules.EXACT_WEIGHTS["payment_account"] / 10)
    assert features["families"] == 1
    # the same value held by many stores weighs less, so its feature falls with the holders
    shared = rules.weigh([_piece("payment_account", stores=12)], {("payment_account", "payment_account-value"): 0.0})
    assert pair_features(shared)[FEATURE_NAMES.index("bits:payment_account")] < features["bits:payment_account"]


def test_a_value_whose_holders_share_nothing_else_is_infrastructure():
    key = ("payment_account", "payment_account-value")
    for stores in (3, 6):
        lone = rules.weigh([_piece("payment_account", stores=stores)], {key: 0.0})
        assert lone[0].weight == rules.INFRASTRUCTURE_WEIGHT and rules.probability(lone) < 0.05
    # one holder pair in three corroborated (two of one operator's stores, say): the value keeps its weight
    backed = rules.weigh([_piece("payment_account", stores=3)], {key: 1 / 3})
    assert backed[0].weight == rules.EXACT_WEIGHTS["payment_account"] - 1 and rules.probability(backed) > 0.5
    # two holders: one pair, nothing to measure support on
    assert rules.weigh([_piece("payment_account")])[0].weight == rules.EXACT_WEIGHTS["payment_account"]


def test_session_features_need_a_close_exact_session_value():
    near = rules.weigh([_piece("ip", gap_hours=2.0)])
    far = rules.weigh([_piece("ip", gap_hours=20.0)])
    weak = rules.weigh([_piece("ip", level="weak", gap_hours=1.0)])
    position = FEATURE_NAMES.index("session_within_6h")
    assert pair_features(near)[position] == 1
    assert pair_features(far)[position] == 0 and pair_features(far)[position + 1] == 1
    assert pair_features(weak)[position] == 0


# ------------------------------------------------------------------------------------------ training

def test_the_folded_model_gives_the_calibrated_classifiers_probabilities(market):
    from sklearn.calibration import CalibratedClassifierCV

    from models.train import RuleOffsetLogistic

    data = training_set(market["weighted"], market["labels"], "truth")
    model = fit(data, held_out=False)
    reference = CalibratedClassifierCV(RuleOffsetLogistic(), method="sigmoid", cv=5, ensemble=False)
    expected = reference.fit(data.features, data.labels).predict_proba(data.features)[:, 1]
    got = np.array([model.probability(market["weighted"][pair]) for pair in data.pairs])
    assert np.abs(got - expected).max() < 1e-9


def test_a_model_trained_on_truth_separates_the_training_pairs(market):
    data = training_set(market["weighted"], market["labels"], "truth")
    model = fit(data)
    probabilities = np.array([model.probability(market["weighted"][pair]) for pair in data.pairs])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(data.labels, probabilities) > 0.95
    held_out = model.provenance["held_out"]
    assert held_out["test_pairs"] == math.ceil(len(data.labels) * 0.25)
    assert set(held_out) >= {"learned", "rules"}


def test_save_and_load_give_identical_scores(market, tmp_path):
    model = fit(training_set(market["weighted"], market["labels"], "truth"), held_out=False, name="m")
    model.save(tmp_path / "m")
    loaded = LinearModel.load(tmp_path / "m")
    assert loaded == model
    for evidence in list(market["weighted"].values())[:200]:
        assert loaded.probability(evidence) == model.probability(evidence)
    text = (tmp_path / "m" / "model.json").read_text(encoding="utf-8")
    assert json.loads(text)["features"] == list(FEATURE_NAMES)  # plain, inspectable JSON


def test_contributions_sum_to_the_models_log_odds(market):
    model = fit(training_set(market["weighted"], market["labels"], "truth"), held_out=False)
    for evidence in list(market["weighted"].values())[:50]:
        terms = model.contributions(evidence)
        assert terms[-1][0] == INTERCEPT
        bits = sum(b for _, b in terms)
        probability = 1 / (1 + 2 ** -bits)
        assert probability == pytest.approx(model.probability(evidence), abs=1e-9)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format_version=99), "format version 99"),
    (lambda d: d.update(format="pickle"), "not an assoc model"),
    (lambda d: d.update(features=d["features"][:-1], coefficients=d["coefficients"][:-1]), "missing ['families']"),
    (lambda d: d.update(features=list(reversed(d["features"]))), "other order"),
    (lambda d: d.update(feature_set="pair-features-0"), "feature set 'pair-features-0'"),
    (lambda d: d["coefficients"].__setitem__(0, "NaN"), "finite numbers"),
])
def test_a_mismatched_model_is_refused_with_what_differs(market, tmp_path, change, message):
    model = fit(training_set(market["weighted"], market["labels"], "truth"), held_out=False)
    data = model.to_json()
    change(data)
    (tmp_path / "model.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelError, match=message.replace("[", r"\[").replace("]", r"\]")):
        LinearModel.load(tmp_path / "model.json")


def test_too_few_labels_or_one_class_cannot_train(market):
    pairs = sorted(market["labels"])
    positives = [p for p in pairs if market["labels"][p]][:60]
    with pytest.raises(TrainingError, match="at least 5 of each"):
        fit(training_set(market["weighted"], {p: True for p in positives}, "one class"))
    few = {p: market["labels"][p] for p in pairs[:30]}
    with pytest.raises(TrainingError, match="training needs at least 50"):
        fit(training_set(market["weighted"], few, "few"))


# ------------------------------------------------------------------------------------------ suggestions

# Sorts of evidence (kind, level, bits): log-odds on both sides of 0, no two pairs equally uncertain, and one
# certain pair (Z) of a sort of its own.
_SORTS = {
    "P": [[("phone", "exact", 10 + d)] for d in (0.25, -0.5, 1.0, -2.0, 3.0, -4.5, 6.0, 8.0)],
    "E": [[("email", "exact", 10 + d)] for d in (0.1, -0.75, 1.5, -3.5, 5.0)],
    "N": [[("person_name", "exact", 5.0 + d), ("ip", "prefix", 1.5)] for d in (3.8, 2.25, 5.7)],
    "Z": [[("payment_account", "exact", 16.0), ("email", "exact", 15.0)]],
}


def _sorted_market(sorts: str) -> dict:
    """Weighted evidence, as the scorer sees it, of pairs (sort, id)."""
    return {(sort, f"{sort}{i:02d}"): [_piece(kind, level=level, weight=bits) for kind, level, bits in specs]
            for sort in sorts for i, specs in enumerate(_SORTS[sort])}


@pytest.mark.parametrize("sorts", ["P", "PENZ"])
@pytest.mark.parametrize("count", [1, 3, 6, 9, 12])
def test_suggest_puts_uncertain_pairs_first_and_skips_decided_ones(sorts, count):
    """What models/suggest.py guarantees of every request: the first count - round(count * EXPLORE) picks are,
    within each sort of evidence, that sort's most uncertain undecided pairs, most uncertain first, taken
    round-robin over the sorts (a sort gets at most one pick more than another that still has pairs); the
    rest are other undecided pairs drawn at random, reproducibly per seed."""
    evidence = _sorted_market(sorts)
    scorer = RuleScorer()
    decided = {("P", "P00")}  # the most uncertain pair of all, already decided
    undecided = [pair for pair in evidence if pair not in decided]

    def uncertainty(pair) -> float:
        p = scorer.probability(evidence[pair])
        return abs(math.log2(p / (1 - p)))

    picked = suggest(evidence, scorer, count, exclude=decided, seed=7)
    pairs = [s.pair for s in picked]
    assert len(pairs) == len(set(pairs)) == min(count, len(undecided))
    assert not set(pairs) & decided and set(pairs) <= set(evidence)
    for s in picked:
        assert s.probability == scorer.probability(evidence[s.pair])
    uncertain = pairs[:count - round(count * EXPLORE)]
    assert len(uncertain) >= 1
    by_sort: dict[str, list] = {}
    for pair in uncertain:
        by_sort.setdefault(pair[0], []).append(pair)
    for sort, chosen in by_sort.items():
        ranked = sorted((p for p in undecided if p[0] == sort), key=uncertainty)
        assert chosen == ranked[:len(chosen)]  # the sort's most uncertain, in order, none skipped
    available = {sort: sum(1 for p in undecided if p[0] == sort) for sort in {p[0] for p in undecided}}
    taken = {sort: len(by_sort.get(sort, [])) for sort in available}
    for sort, n in taken.items():  # round-robin: a sort with pairs left is at most one pick behind any other
        if n < available[sort]:
            assert max(taken.values()) - n <= 1, taken
    assert pairs[0] == min(undecided, key=uncertainty)  # the first pick is the most uncertain of all
    if len(sorts) == 1:  # one sort: the uncertain share is simply the most uncertain pairs in order
        assert uncertain == sorted(undecided, key=uncertainty)[:len(uncertain)]
    assert [s.pair for s in suggest(evidence, scorer, count, exclude=decided, seed=7)] == pairs
    assert [s.pair for s in suggest(evidence, scorer, count, exclude=decided, seed=8)][:len(uncertain)] == uncertain


def test_suggestions_spread_over_kinds_of_evidence():
    ip_pairs = {("A", f"I{i:02d}"): rules.weigh([_piece("ip", gap_hours=20.0 + i)]) for i in range(10)}
    name_pair = {("A", "N"): rules.weigh([_piece("person_name"), _piece("ip", level="prefix")])}
    picked = suggest({**ip_pairs, **name_pair}, RuleScorer(), 4, seed=0)
    assert ("A", "N") in {s.pair for s in picked[:2]}  # round-robin over kinds, not ten IP-only pairs first


# ------------------------------------------------------------------------------------------ CLI

@pytest.fixture(scope="module")
def trained(market, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli")
    runner = CliRunner()
    db = root / "index.db"
    added = runner.invoke(main, ["index", "add", str(market["root"] / "bundle"), "--db", str(db), "-q"])
    assert added.exit_code == 0, added.output
    out = root / "models" / "fixture"
    result = runner.invoke(main, ["train", "--db", str(db), "--truth", str(market["root"] / "truth"),
                                  "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return {"db": db, "model": out, "figures": json.loads(result.output), "root": root}


def test_train_writes_a_model_and_its_card(trained):
    figures = trained["figures"]
    assert (trained["model"] / "model.json").exists() and figures["pairs"] > 50
    card = (trained["model"] / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "generator truth" in card and "| rule_logit |" in card and "scikit-learn" in card


def test_scan_with_a_model_scores_with_it_and_explains_its_terms(market, trained, tmp_path):
    runner = CliRunner()
    bundle = str(market["root"] / "bundle")
    result = runner.invoke(main, ["scan", bundle, "--out", str(tmp_path / "out"), "--model", str(trained["model"]),
                                  "--no-cache", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["scorer"] == "fixture"
    model = LinearModel.load(trained["model"])
    expected = decide(market["comparison"], SETTINGS, scorer=model)
    with (tmp_path / "out" / "pairs.csv").open(encoding="utf-8", newline="") as handle:
        rows = {(r["store_a"], r["store_b"]): r for r in csv.DictReader(handle)}
    assert {(p.store_a, p.store_b) for p in expected.pairs if p.linked} == \
        {k for k, r in rows.items() if r["linked"] == "true"}
    linked = next(p for p in expected.pairs if p.linked and p.evidence)
    explained = runner.invoke(main, ["explain", str(tmp_path / "out"), linked.store_a, linked.store_b, "--json"])
    terms = json.loads(explained.output)["model_contributions"]
    assert terms and terms[-1]["feature"] == INTERCEPT
    assert 1 / (1 + 2 ** -sum(t["bits"] for t in terms)) == pytest.approx(linked.operator_score, abs=1e-3)


def test_check_uses_the_model_too(market, trained, tmp_path):
    runner = CliRunner()
    bundle = read_bundle(market["root"] / "bundle")
    store = sorted(bundle.stores)[0]
    candidate = tmp_path / "candidate.json"
    with IndexStore.open(trained["db"]) as index:
        record = index.store_record(store)
    candidate.write_text(json.dumps({"store_id": store, "signals": [
        {"kind": s.kind, "value": s.value} for s in record.signals]}), encoding="utf-8")
    result = runner.invoke(main, ["check", str(candidate), "--db", str(trained["db"]), "--model",
                                  str(trained["model"]), "--json"])
    assert result.exit_code in (0, 1), result.output
    pairs = json.loads(result.output)[0]["pairs"]
    assert pairs and all(p["model_contributions"] for p in pairs if p["evidence"])


def test_scan_refuses_a_mismatched_model_with_exit_2(market, trained, tmp_path):
    data = json.loads((trained["model"] / "model.json").read_text(encoding="utf-8"))
    data["features"][0] = "something_else"
    (tmp_path / "model.json").write_text(json.dumps(data), encoding="utf-8")
    result = CliRunner().invoke(main, ["scan", str(market["root"] / "bundle"), "--out", str(tmp_path / "o"),
                                       "--model", str(tmp_path / "model.json")])
    assert result.exit_code == 2 and "Retrain it" in result.output
    assert not (tmp_path / "o").exists()


def test_train_on_too_few_decisions_says_what_to_do(trained):
    runner = CliRunner()
    suggestions = runner.invoke(main, ["review", "suggest", "--db", str(trained["db"]), "-n", "5", "--json"])
    assert suggestions.exit_code == 0, suggestions.output
    rows = json.loads(suggestions.output)
    assert len(rows) == 5
    first = rows[0]
    decided = runner.invoke(main, ["review", "--db", str(trained["db"]), "--pair", first["store_a"],
                                   first["store_b"], "--decision", "confirmed"])
    assert decided.exit_code == 0, decided.output
    again = json.loads(runner.invoke(main, ["review", "suggest", "--db", str(trained["db"]), "-n", "5",
                                            "--json"]).output)
    assert (first["store_a"], first["store_b"]) not in {(r["store_a"], r["store_b"]) for r in again}
    result = runner.invoke(main, ["train", "--db", str(trained["db"]), "--out", str(trained["root"] / "m2")])
    assert result.exit_code == 2 and "review decisions" in result.output and "assoc review suggest" in result.output


def test_serve_scores_links_with_the_model(market, trained):
    import os
    import subprocess
    import sys

    from test_server import Client

    env = {**os.environ, "ASSOC_TOKEN": "model-token-0123456789"}
    process = subprocess.Popen([sys.executable, "-c", "from assoc.cli import main; main()", "serve", "--db",
                                str(trained["db"]), "--port", "0", "--model", str(trained["model"])],
                               env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        assert line.startswith("listening on"), line + process.stderr.read()
        client = Client(int(line.rsplit(":", 1)[1]))
        linked = next(p for p in decide(market["comparison"], SETTINGS).pairs if p.linked and p.evidence)
        status, result = client.call("GET", f"/v1/stores/{linked.store_a}/links", token=env["ASSOC_TOKEN"])
        assert status == 200, result
        pair = next(p for p in result["pairs"] if p["store_id"] == linked.store_b)
        terms = pair["model_contributions"]
        assert terms and terms[-1]["feature"] == INTERCEPT
        assert 1 / (1 + 2 ** -sum(t["bits"] for t in terms)) == pytest.approx(pair["operator_score"], abs=1e-3)
    finally:
        process.terminate()
        process.wait(timeout=30)
