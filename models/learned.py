"""A learned pair scorer: a calibrated logistic model over models.features, stored as JSON.

The file is plain data (coefficients, intercept, feature names, provenance), never a pickle: a
model file can be read, diffed and reviewed, and loading one cannot run code. Loading checks
the format, its version and that the feature list is exactly the one this code computes; any
mismatch is refused with a message saying what differs.

P(same operator) = 1 / (1 + exp(-(intercept + sum coefficient_j * feature_j))). Platt
calibration and feature scaling are folded into the coefficients when the model is trained
(models/train.py), so a feature's contribution to a pair's log-odds is coefficient x value,
and 0 for evidence the pair does not have.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assoc.errors import AssocError
from assoc.evidence import Evidence

from .features import FEATURE_NAMES, FEATURE_SET, pair_features

MODEL_FORMAT = "assoc-linear-model"
MODEL_FORMAT_VERSION = 1
MODEL_FILE = "model.json"
CARD_FILE = "MODEL_CARD.md"
INTERCEPT = "(intercept)"  # the name of the intercept's term in explanations


class ModelError(AssocError):
    """A model file that cannot be used: missing, malformed, or made for other features."""


@dataclass(frozen=True)
class LinearModel:
    coefficients: tuple[float, ...]  # log-odds per unit of each feature, in FEATURE_NAMES order
    intercept: float
    feature_names: tuple[str, ...] = FEATURE_NAMES
    feature_set: str = FEATURE_SET
    provenance: dict[str, Any] = field(default_factory=dict)  # training data, metrics, versions (the card's facts)

    @property
    def name(self) -> str:
        return str(self.provenance.get("name") or "learned model")

    def logit(self, features: list[float]) -> float:
        return self.intercept + sum(c * x for c, x in zip(self.coefficients, features, strict=True))

    def probability(self, evidence: list[Evidence]) -> float:
        """P(same operator) of a pair's weighted evidence; the `Scorer` protocol of assoc.scan."""
        return _sigmoid(self.logit(pair_features(evidence)))

    def contributions(self, evidence: list[Evidence]) -> list[tuple[str, float]]:
        """(feature, contribution in bits of log-odds) for the features the pair has, largest first, then
        the intercept: together they sum to the model's log-odds of the pair."""
        features = pair_features(evidence)
        out = [(name, c * x / math.log(2)) for name, c, x in zip(self.feature_names, self.coefficients, features,
                                                                strict=True) if x != 0 and c != 0]
        out.sort(key=lambda item: (-abs(item[1]), item[0]))
        return [*out, (INTERCEPT, self.intercept / math.log(2))]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "feature_set": self.feature_set,
            "features": list(self.feature_names),
            "coefficients": list(self.coefficients),  # JSON keeps every digit: loading gives identical scores
            "intercept": self.intercept,
            "provenance": self.provenance,
        }

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / MODEL_FILE
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        temporary.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> LinearModel:
        """A model directory (holding model.json) or the model.json file itself."""
        file = path / MODEL_FILE if path.is_dir() else path
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"{file}: no model there; train one with `assoc train`") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{file}: not a readable JSON model file ({exc})") from exc
        return cls.from_json(data, source=str(file))

    @classmethod
    def from_json(cls, data: Any, *, source: str = "model") -> LinearModel:
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ModelError(f"{source}: not an assoc model (format {MODEL_FORMAT!r} expected)")
        if data.get("format_version") != MODEL_FORMAT_VERSION:
            raise ModelError(f"{source}: model format version {data.get('format_version')!r}; this assoc reads "
                             f"version {MODEL_FORMAT_VERSION}. Retrain it with this version's `assoc train`.")
        names = tuple(data.get("features") or ())
        if data.get("feature_set") != FEATURE_SET or names != FEATURE_NAMES:
            missing = [n for n in FEATURE_NAMES if n not in names]
            extra = [n for n in names if n not in FEATURE_NAMES]
            raise ModelError(f"{source}: trained on feature set {data.get('feature_set')!r}, this assoc computes "
                             f"{FEATURE_SET!r} (missing {missing or 'none'}, unknown {extra or 'none'}"
                             f"{', other order' if not missing and not extra else ''}). Retrain it with `assoc train`.")
        coefficients = data.get("coefficients")
        intercept = data.get("intercept")
        if (not isinstance(coefficients, list) or len(coefficients) != len(names)
                or not all(_finite(c) for c in coefficients) or not _finite(intercept)):
            raise ModelError(f"{source}: coefficients must be {len(names)} finite numbers and intercept a number")
        return cls(coefficients=tuple(float(c) for c in coefficients), intercept=float(intercept),
                   feature_names=names, feature_set=data["feature_set"], provenance=dict(data.get("provenance") or {}))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    exp = math.exp(logit)
    return exp / (1.0 + exp)
