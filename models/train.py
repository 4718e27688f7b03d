"""Training a LinearModel on labelled pairs: reviewer decisions or a generator's truth.

Logistic regression that starts from the rule table (its log-odds are an offset; L2 pulls the
learned corrections on standardised features towards 0), Platt-calibrated on cross-validated
decision values (scikit-learn's CalibratedClassifierCV, ensemble=False: one classifier fitted on
every label, one calibration fitted on out-of-fold predictions), then folded into one set of
coefficients on the raw features (models/learned.py). So 25 labels give the rule table,
recalibrated to the team's marketplace, and 400 can move the weight of every kind.
The held-out figures in the model card come from a model fitted the same way on a stratified
75% split and scored on the other 25%, next to the rule table on the same 25%; the saved model
is then fitted on every label.
"""

from __future__ import annotations

import csv
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from assoc.decisions import decision_labels, load_review
from assoc.errors import AssocError
from assoc.evidence import Evidence
from assoc.index import StorePair
from assoc.records import Progress, no_progress
from assoc.scan import compare
from assoc.settings import Settings
from assoc.store import IndexStore

from . import rules
from .features import FEATURE_NAMES, FEATURE_SET, RULE_LOGIT_UNIT, pair_features
from .learned import CARD_FILE, LinearModel

REGULARISATION = 1.0  # inverse L2 strength on standardised features (scikit-learn's C)
MIN_PER_CLASS = 5  # fewer confirmed or dismissed examples than this cannot be trained on
# Below this many labels the learned models of benchmarks/learning_curve.py were worse than the
# rule table on unseen bundles (BENCHMARKS.md), so training refuses rather than ship one.
MIN_LABELS = 50
HELD_OUT_SHARE = 0.25


class TrainingError(AssocError):
    """Labels that cannot train a model: too few, or of one class only."""


@dataclass(frozen=True)
class TrainingSet:
    pairs: list[StorePair]
    features: np.ndarray  # len(pairs) x len(FEATURE_NAMES)
    labels: np.ndarray  # 1 = same operator (confirmed), 0 = not (dismissed)
    rule_probabilities: np.ndarray
    source: str  # what the labels are ('truth: DIR', 'review decisions in DB')
    unlabelled_skipped: int = 0  # labelled pairs with no evidence at all (nothing to learn from)

    @property
    def positives(self) -> int:
        return int(self.labels.sum())


def training_set(weighted: Mapping[StorePair, list[Evidence]], labels: Mapping[StorePair, bool],
                 source: str) -> TrainingSet:
    """Features of the labelled pairs that have evidence (`weighted` from Comparison.weighted())."""
    pairs = sorted(pair for pair in labels if pair in weighted)
    rows = [pair_features(weighted[pair]) for pair in pairs]
    features = np.array(rows, dtype=float).reshape(len(pairs), len(FEATURE_NAMES))
    return TrainingSet(
        pairs=pairs, features=features, labels=np.array([int(labels[p]) for p in pairs], dtype=int),
        rule_probabilities=np.array([rules.probability(weighted[p]) for p in pairs], dtype=float),
        source=source, unlabelled_skipped=sum(1 for pair in labels if pair not in weighted))


def truth_labels(truth_dir: Path, pairs: Sequence[StorePair]) -> dict[StorePair, bool]:
    """Same operator or not, for `pairs`, from a generator's truth/stores.csv (store_id, operator_id)."""
    path = truth_dir / "stores.csv"
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"store_id", "operator_id"} <= set(reader.fieldnames):
                raise TrainingError(f"{path}: needs the columns store_id and operator_id")
            operator = {row["store_id"]: row["operator_id"] for row in reader}
    except OSError as exc:
        raise TrainingError(f"{path}: cannot read the truth ({exc.strerror or exc})") from exc
    return {pair: operator.get(pair[0]) is not None and operator.get(pair[0]) == operator.get(pair[1])
            for pair in pairs if pair[0] in operator and pair[1] in operator}


def fit(data: TrainingSet, *, seed: int = 0, held_out: bool = True, name: str = "",
        min_labels: int = MIN_LABELS) -> LinearModel:
    """A calibrated LinearModel on `data`; with `held_out`, provenance carries held-out metrics.

    Raises TrainingError for fewer than `min_labels` labels or MIN_PER_CLASS of either class."""
    _check_classes(data.labels, data.source, min_labels)
    metrics: dict[str, Any] = {}
    if held_out and min(data.positives, len(data.labels) - data.positives) >= 2 * MIN_PER_CLASS:
        metrics = _held_out_metrics(data, seed)
    coefficients, intercept = _fit_linear(data.features, data.labels, seed)
    provenance = {
        "name": name,
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "labels": data.source,
        "pairs": len(data.labels),
        "positives": data.positives,
        "negatives": int(len(data.labels) - data.positives),
        "labelled_pairs_without_evidence": data.unlabelled_skipped,
        "regularisation_C": REGULARISATION,
        "held_out": metrics,
        "versions": _versions(),
    }
    return LinearModel(coefficients=tuple(coefficients), intercept=intercept, provenance=provenance)


def _check_classes(labels: np.ndarray, source: str, minimum: int) -> None:
    positives = int(labels.sum())
    negatives = int(len(labels) - positives)
    if len(labels) < minimum:
        raise TrainingError(f"{source}: {len(labels)} labelled pairs with evidence; training needs at least {minimum} "
                            f"(below that, learned models did worse than the rule table on unseen data). Review "
                            f"more pairs, e.g. those `assoc review suggest` lists")
    if min(positives, negatives) < MIN_PER_CLASS:
        raise TrainingError(f"{source}: {positives} linked and {negatives} unlinked labelled pairs with evidence; "
                            f"training needs at least {MIN_PER_CLASS} of each (review more pairs, "
                            f"e.g. from `assoc review suggest`)")


class RuleOffsetLogistic:
    """Logistic regression whose starting point is the rule table: log-odds = rule log-odds (an
    offset, from the rule_logit feature) + w . standardised features + b, L2 on w. With few
    labels the penalty keeps w near 0 and the model is the rule table, recalibrated; with more,
    the data moves the weights of each kind. A scikit-learn style estimator, so that
    CalibratedClassifierCV can calibrate it."""

    _estimator_type = "classifier"

    def __init__(self, C: float = REGULARISATION) -> None:  # noqa: N803 - scikit-learn's name
        self.C = C

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"C": self.C}

    def set_params(self, **params: Any) -> RuleOffsetLogistic:
        self.C = params.get("C", self.C)
        return self

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags())

    def fit(self, features: np.ndarray, labels: np.ndarray) -> RuleOffsetLogistic:
        from scipy.optimize import minimize

        self.classes_ = np.array([0, 1])
        self.mean_ = features.mean(axis=0)
        scale = features.std(axis=0)
        self.scale_ = np.where(scale == 0, 1.0, scale)
        standard = (features - self.mean_) / self.scale_
        offset = _rule_offset(features)
        sign = 2.0 * labels - 1.0

        def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
            margin = sign * (offset + standard @ params[:-1] + params[-1])
            value = np.logaddexp(0.0, -margin).sum() + params[:-1] @ params[:-1] / (2 * self.C)
            slope = -sign * _expit(-margin)
            gradient = np.append(standard.T @ slope + params[:-1] / self.C, slope.sum())
            return float(value), gradient

        solution = minimize(loss, np.zeros(features.shape[1] + 1), jac=True, method="L-BFGS-B")
        self.coef_, self.intercept_ = solution.x[:-1], float(solution.x[-1])
        return self

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        return _rule_offset(features) + ((features - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        positive = _expit(self.decision_function(features))
        return np.column_stack([1 - positive, positive])

    def predict(self, features: np.ndarray) -> np.ndarray:
        return (self.decision_function(features) >= 0).astype(int)

    def raw_linear(self) -> tuple[np.ndarray, float]:
        """(coefficients, intercept) of decision_function on the raw features."""
        weights = self.coef_ / self.scale_
        weights = weights.copy()
        weights[_RULE_COLUMN] += _RULE_OFFSET_SCALE
        return weights, self.intercept_ - float(np.dot(self.coef_ / self.scale_, self.mean_))


_RULE_COLUMN = FEATURE_NAMES.index("rule_logit")
_RULE_OFFSET_SCALE = RULE_LOGIT_UNIT * math.log(2)  # rule_logit is in units of RULE_LOGIT_UNIT bits; log-odds in nats


def _rule_offset(features: np.ndarray) -> np.ndarray:
    return features[:, _RULE_COLUMN] * _RULE_OFFSET_SCALE


def _expit(values: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(values)


def _fit_linear(features: np.ndarray, labels: np.ndarray, seed: int) -> tuple[list[float], float]:
    from sklearn.calibration import CalibratedClassifierCV

    folds = int(min(5, labels.sum(), len(labels) - labels.sum()))
    calibrated = CalibratedClassifierCV(RuleOffsetLogistic(), method="sigmoid", cv=folds, ensemble=False)
    member = calibrated.fit(features, labels).calibrated_classifiers_[0]
    platt = member.calibrators[0]  # P = 1 / (1 + exp(a * f + b)) on the decision value f
    weights, intercept = member.estimator.raw_linear()
    return [float(w) for w in -platt.a_ * weights], float(-platt.a_ * intercept - platt.b_)


def _held_out_metrics(data: TrainingSet, seed: int) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, log_loss
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(data.labels)), test_size=HELD_OUT_SHARE, random_state=seed,
                                   stratify=data.labels)
    coefficients, intercept = _fit_linear(data.features[train], data.labels[train], seed)
    logits = data.features[test] @ np.array(coefficients) + intercept
    learned = 1.0 / (1.0 + np.exp(-logits))
    truth = data.labels[test]
    figures: dict[str, Any] = {"test_pairs": int(len(test)), "test_positives": int(truth.sum())}
    for name, probabilities in (("learned", learned), ("rules", data.rule_probabilities[test])):
        clipped = np.clip(probabilities, 1e-6, 1 - 1e-6)
        figures[name] = {
            "f1_at_0.5": round(float(f1_score(truth, probabilities >= 0.5, zero_division=0)), 4),
            "average_precision": round(float(average_precision_score(truth, probabilities)), 4),
            "log_loss": round(float(log_loss(truth, clipped, labels=[0, 1])), 4),
            "brier": round(float(brier_score_loss(truth, probabilities)), 4),
        }
    return figures


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    import scipy
    import sklearn

    return {"assoc": version("assoc"), "python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__}


def write_card(model: LinearModel, directory: Path, *, description: str = "") -> Path:
    """MODEL_CARD.md beside model.json: what the model reads, what it was trained on, how it measured."""
    facts = model.provenance
    lines = [
        "# Model card",
        "",
        description or "A calibrated logistic model of P(same operator) for a candidate store pair.",
        "",
        "## Training data",
        f"- labels: {facts.get('labels', '?')}",
        f"- labelled pairs with evidence: {facts.get('pairs', '?')} ({facts.get('positives', '?')} same operator, "
        f"{facts.get('negatives', '?')} not); labelled pairs without any shared evidence, skipped: "
        f"{facts.get('labelled_pairs_without_evidence', 0)}",
        f"- trained: {facts.get('trained_at', '?')}; L2 C = {facts.get('regularisation_C', '?')}; "
        "Platt calibration on 5-fold out-of-fold decision values",
        "",
        "## Held-out figures (stratified 25% of the labels, model fitted on the other 75%)",
    ]
    held_out = facts.get("held_out") or {}
    if held_out:
        lines += [f"{held_out['test_pairs']} pairs, {held_out['test_positives']} same operator.", "",
                  "| scorer | F1 at 0.5 | average precision | log loss | Brier |", "|---|---|---|---|---|"]
        for name in ("learned", "rules"):
            row = held_out[name]
            lines.append(f"| {name} | {row['f1_at_0.5']} | {row['average_precision']} | {row['log_loss']} | "
                         f"{row['brier']} |")
    else:
        lines.append("Too few labels of one class for a held-out split; no figures.")
    lines += ["", f"## Features ({FEATURE_SET}) and coefficients (log-odds per unit)", "",
              "| feature | coefficient |", "|---|---|"]
    lines += [f"| {name} | {coefficient:+.4f} |" for name, coefficient in zip(model.feature_names, model.coefficients,
                                                                             strict=True)]
    lines += [f"| (intercept) | {model.intercept:+.4f} |", "", "## Library versions", ""]
    lines += [f"- {name} {version}" for name, version in sorted((facts.get("versions") or {}).items())]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CARD_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_from_index(db: Path, settings: Settings, *, truth_dir: Path | None = None, name: str = "",
                     progress: Progress = no_progress) -> tuple[LinearModel, TrainingSet]:
    """Train on the stores of an index file: labels from its reviewer decisions, or from a truth folder.

    The pairs are compared exactly as `assoc scan --db` compares them (values marked shared
    infrastructure are hubs), so the features a model learns from are the ones it will score."""
    with IndexStore.open(db) as index:
        bundle = index.load_bundle()
        review = load_review(index)
        decided = decision_labels(index)
    weighted = compare(bundle, settings, progress=progress, review=review).weighted()
    if truth_dir is not None:
        labels, source = truth_labels(truth_dir, sorted(weighted)), f"generator truth {truth_dir}"
    else:
        labels, source = decided, f"review decisions in {db}"
    data = training_set(weighted, labels, source)
    return fit(data, name=name), data
