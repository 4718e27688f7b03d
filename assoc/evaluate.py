"""Score a scan's pairs.csv against a planted truth: pairwise precision/recall/F1 and a precision-recall curve.

The truth is the `truth/` folder written by the benchmark generator (../shared/bench/market.py):
`linked.csv` lists every truly associated pair (store_a, store_b, why, ...) and `stores.csv`
every store. The figures follow the benchmark scorer (score.py) so the two agree:

- `linked` of pairs.csv against linked.csv gives tp/fp/fn, precision, recall and F1;
- recall by `why` (operator_strong, operator_evasive, overlap_only, and any other value found);
- the `score` column swept over its distinct positive values gives a precision-recall curve.
  A pair missing from pairs.csv has score 0 and is never above a threshold, so the curve ends at
  the recall of the pairs the scan reported, below 1 when it missed some. Average precision is
  the area under that step curve, sum over thresholds of (recall gained) x (precision there):
  scikit-learn's definition, with the recall the scan never reached counting as zero area.

pairs.csv is read leniently where a reader cannot be wrong (either pair order, extra columns in
any order, a BOM, CRLF line ends, TRUE/true/1/yes, duplicate rows: linked if any row says so,
the highest score counts) and strictly where it could (a missing file or column, a score that is
not a number in [0, 1], a `linked` word that is neither true nor false). Store ids the truth does
not know are counted and reported; their pairs count as false positives when linked.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import AssocError, OutputError

TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "f", ""})
WHY_ORDER = ("operator_strong", "operator_evasive", "overlap_only")  # shown first, in this order
PAIRS_COLUMNS = ("store_a", "store_b", "score", "linked")
TRUTH_STORES_COLUMNS = ("store_id",)
TRUTH_LINKED_COLUMNS = ("store_a", "store_b", "why")
SHOWN_PROBLEMS = 20
SHOWN_UNKNOWN_IDS = 5

Pair = tuple[str, str]

csv.field_size_limit(1 << 30)  # a reasons cell can be long; the default limit (128 kB) is not a format rule


class EvaluationInputError(AssocError):
    """pairs.csv or a truth file is missing, unreadable, lacks a column or holds a value that cannot be read."""

    def __init__(self, problems: list[str], advice: str = ""):
        self.problems = problems
        if len(problems) == 1:
            message = problems[0]
        else:
            shown = "\n".join(f"  - {p}" for p in problems[:SHOWN_PROBLEMS])
            more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
            message = f"{len(problems)} problems:\n{shown}{more}"
        super().__init__(f"{message}\n{advice}" if advice else message)


def pair_key(a: str, b: str) -> Pair:
    """The pair in canonical order (store_a < store_b as strings), as in pairs.csv and linked.csv."""
    return (a, b) if a < b else (b, a)


@dataclass(frozen=True, slots=True)
class Truth:
    """The planted truth: every store id and every associated pair with its `why`."""

    folder: Path
    stores: frozenset[str]
    linked: Mapping[Pair, str]  # canonical pair -> why


@dataclass(frozen=True, slots=True)
class ScanPairs:
    """What a scan's pairs.csv says: the highest score of each pair and the pairs it links."""

    path: Path
    rows: int
    scores: Mapping[Pair, float]  # every listed pair (self-pairs dropped) -> its highest score
    linked: frozenset[Pair]
    duplicate_rows: int = 0
    self_pairs: int = 0


@dataclass(frozen=True, slots=True)
class PairwiseFigures:
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float

    @classmethod
    def from_counts(cls, tp: int, fp: int, fn: int) -> PairwiseFigures:
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return cls(tp, fp, fn, precision, recall, f1)


@dataclass(frozen=True, slots=True)
class WhyRecall:
    found: int
    total: int

    @property
    def recall(self) -> float:
        return self.found / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """Predicting `linked` for every pair with score >= threshold."""

    threshold: float
    tp: int
    fp: int
    precision: float
    recall: float


@dataclass(frozen=True, slots=True)
class PrecisionRecallCurve:
    """The score swept over its distinct positive values, highest threshold first."""

    points: tuple[CurvePoint, ...]
    truth_pairs: int
    unscored_truth_pairs: int  # truth pairs with no positive score in pairs.csv: out of the curve's reach

    @property
    def max_recall(self) -> float:
        return self.points[-1].recall if self.points else 0.0

    @property
    def average_precision(self) -> float:
        """Sum over thresholds of (recall gained) x (precision there); recall never reached adds nothing."""
        area, previous = 0.0, 0.0
        for point in self.points:
            area += (point.recall - previous) * point.precision
            previous = point.recall
        return area


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Every figure `assoc evaluate` reports."""

    pairs_file: Path
    truth_dir: Path
    truth_stores: int
    truth_linked: int
    pair_rows: int
    distinct_pairs: int
    linked_pairs: int
    pairwise: PairwiseFigures
    recall_by_why: Mapping[str, WhyRecall]
    curve: PrecisionRecallCurve
    unknown_store_ids: tuple[str, ...]  # sorted
    unknown_pairs: int  # listed pairs with at least one unknown store id
    warnings: tuple[str, ...] = field(default=())

    @property
    def decision(self) -> CurvePoint:
        """The `linked` column as a point of the curve plane (no threshold of its own: NaN)."""
        return CurvePoint(math.nan, self.pairwise.tp, self.pairwise.fp, self.pairwise.precision,
                          self.pairwise.recall)

    def to_dict(self) -> dict[str, Any]:
        """The figures as plain JSON-ready data (the curve's points are left to the library and the PNG)."""
        return {
            "pairs_file": str(self.pairs_file),
            "truth_dir": str(self.truth_dir),
            "truth": {"stores": self.truth_stores, "linked_pairs": self.truth_linked},
            "scan": {"pair_rows": self.pair_rows, "distinct_pairs": self.distinct_pairs,
                     "linked_pairs": self.linked_pairs},
            "pairwise": asdict(self.pairwise),
            "recall_by_why": {why: {"found": r.found, "total": r.total, "recall": r.recall}
                              for why, r in self.recall_by_why.items()},
            "curve": {"average_precision": self.curve.average_precision, "max_recall": self.curve.max_recall,
                      "thresholds": len(self.curve.points),
                      "unscored_truth_pairs": self.curve.unscored_truth_pairs},
            "unknown_store_ids": {"count": len(self.unknown_store_ids),
                                  "examples": list(self.unknown_store_ids[:SHOWN_UNKNOWN_IDS]),
                                  "pairs": self.unknown_pairs},
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------------- reading

def _read_csv(path: Path, required: tuple[str, ...], fix: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row with stripped lower-case column names) of every non-blank row of `path`."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise EvaluationInputError([f"{path}: {what}; {fix}"])
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = f"{path}: cannot be read ({reason}); it must be a readable UTF-8 CSV file"
        raise EvaluationInputError([problem]) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        columns = [name.strip().lower() for name in header or []]
        missing = [name for name in required if name not in columns]
        if missing:
            found = ", ".join(name for name in columns if name) or "no header at all"
            raise EvaluationInputError([f"{path}: missing column(s) {', '.join(missing)}; its header must name "
                                        f"{', '.join(required)} (found: {found})"])
        where = {name: columns.index(name) for name in dict.fromkeys(columns) if name}
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            yield reader.line_num, {name: (row[i].strip() if i < len(row) else "") for name, i in where.items()}
    except csv.Error as exc:
        raise EvaluationInputError([f"{path} line {reader.line_num}: not valid CSV ({exc}); "
                                    "fix the quoting of that row"]) from exc


def find_truth_dir(path: Path) -> Path:
    """`path` itself, or `path/truth` when given the generator's output folder instead of its truth/ folder."""
    path = Path(path)
    if not (path / "linked.csv").exists() and (path / "truth" / "linked.csv").exists():
        return path / "truth"
    return path


def read_truth(folder: Path) -> Truth:
    """stores.csv and linked.csv of a truth folder (or of its parent, the generator's output folder)."""
    folder = find_truth_dir(folder)
    fix = "--truth must be the truth/ folder written by ../shared/bench/market.py, with stores.csv and linked.csv"
    stores = frozenset(row["store_id"] for _, row in _read_csv(folder / "stores.csv", TRUTH_STORES_COLUMNS, fix)
                       if row["store_id"])
    linked: dict[Pair, str] = {}
    path = folder / "linked.csv"
    for _, row in _read_csv(path, TRUTH_LINKED_COLUMNS, fix):
        a, b = row["store_a"], row["store_b"]
        if a and b and a != b:
            linked[pair_key(a, b)] = row["why"] or "unspecified"
    return Truth(folder=folder, stores=stores, linked=linked)


def read_pairs(path: Path) -> ScanPairs:
    """A scan's pairs.csv. Every bad value is reported at once, each with its line."""
    fix = "OUTDIR must be the output folder of `assoc scan BUNDLE --out OUTDIR`"
    scores: dict[Pair, float] = {}
    linked: set[Pair] = set()
    problems: list[str] = []
    rows = duplicates = self_pairs = 0
    for line, row in _read_csv(path, PAIRS_COLUMNS, fix):
        rows += 1
        a, b = row["store_a"], row["store_b"]
        if not a or not b:
            problems.append(f"{path} line {line}: store_a and store_b must both be given")
            continue
        try:
            score = float(row["score"])
        except ValueError:
            score = math.nan
        if not 0.0 <= score <= 1.0:  # NaN fails this too
            problems.append(f"{path} line {line}: score {row['score']!r} is not a number between 0 and 1")
            continue
        word = row["linked"].lower()
        if word not in TRUE_WORDS and word not in FALSE_WORDS:
            problems.append(f"{path} line {line}: linked {row['linked']!r} is neither true nor false "
                            "(write true/false, 1/0 or yes/no)")
            continue
        if a == b:
            self_pairs += 1
            continue
        key = pair_key(a, b)
        if key in scores:
            duplicates += 1
        scores[key] = max(score, scores.get(key, 0.0))
        if word in TRUE_WORDS:
            linked.add(key)
    if problems:
        raise EvaluationInputError(problems, "Fix these rows, or run `assoc scan` again to rewrite pairs.csv.")
    return ScanPairs(path=path, rows=rows, scores=scores, linked=frozenset(linked), duplicate_rows=duplicates,
                     self_pairs=self_pairs)


# --------------------------------------------------------------------------- figures

def precision_recall_curve(scores: Mapping[Pair, float], truth: AbstractSet[Pair]) -> PrecisionRecallCurve:
    """Precision and recall of `score >= t` for every distinct positive score t, highest first.

    Pairs not in `scores` have score 0 and are never predicted; a score of 0 is not a threshold
    (it would predict every pair of the market, which pairs.csv does not list).
    """
    by_score: dict[float, list[bool]] = defaultdict(list)
    for pair, score in scores.items():
        if score > 0:
            by_score[score].append(pair in truth)
    points: list[CurvePoint] = []
    tp = fp = 0
    for threshold in sorted(by_score, reverse=True):
        hits = sum(by_score[threshold])
        tp += hits
        fp += len(by_score[threshold]) - hits
        points.append(CurvePoint(threshold, tp, fp, tp / (tp + fp), tp / len(truth) if truth else 0.0))
    return PrecisionRecallCurve(points=tuple(points), truth_pairs=len(truth), unscored_truth_pairs=len(truth) - tp)


def compare(pairs: ScanPairs, truth: Truth) -> Evaluation:
    """Every figure of `pairs` against `truth`."""
    truth_pairs = frozenset(truth.linked)
    tp = len(pairs.linked & truth_pairs)
    pairwise = PairwiseFigures.from_counts(tp, len(pairs.linked) - tp, len(truth_pairs) - tp)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pair, why in truth.linked.items():
        counts[why][1] += 1
        counts[why][0] += pair in pairs.linked
    order = [why for why in WHY_ORDER if why in counts] + sorted(set(counts) - set(WHY_ORDER))
    by_why = {why: WhyRecall(*counts[why]) for why in order}
    unknown_ids = sorted({s for pair in pairs.scores for s in pair} - truth.stores)
    unknown = set(unknown_ids)
    unknown_pairs = sum(1 for a, b in pairs.scores if a in unknown or b in unknown)
    warnings: list[str] = []
    if pairs.duplicate_rows:
        warnings.append(f"{pairs.path} lists {pairs.duplicate_rows} pair(s) more than once: "
                        "linked if any row says so, the highest score counts")
    if pairs.self_pairs:
        warnings.append(f"{pairs.path} has {pairs.self_pairs} row(s) pairing a store with itself: ignored")
    if unknown_ids:
        shown = ", ".join(unknown_ids[:SHOWN_UNKNOWN_IDS]) + (", ..." if len(unknown_ids) > SHOWN_UNKNOWN_IDS else "")
        warnings.append(f"{pairs.path} mentions {len(unknown_ids)} store id(s) not in {truth.folder / 'stores.csv'} "
                        f"({shown}) in {unknown_pairs} pair(s); linked ones count as false positives. "
                        "Was the scan run on this truth's bundle?")
    strays = {s for pair in truth.linked for s in pair} - truth.stores
    if strays:
        warnings.append(f"{truth.folder / 'linked.csv'} names {len(strays)} store id(s) missing from stores.csv")
    return Evaluation(
        pairs_file=pairs.path, truth_dir=truth.folder, truth_stores=len(truth.stores), truth_linked=len(truth_pairs),
        pair_rows=pairs.rows, distinct_pairs=len(pairs.scores), linked_pairs=len(pairs.linked), pairwise=pairwise,
        recall_by_why=by_why, curve=precision_recall_curve(pairs.scores, truth_pairs),
        unknown_store_ids=tuple(unknown_ids), unknown_pairs=unknown_pairs, warnings=tuple(warnings))


def evaluate(outdir: Path, truth_dir: Path) -> Evaluation:
    """Read OUTDIR/pairs.csv and the truth folder and compare them. Raises EvaluationInputError on bad input."""
    truth = read_truth(Path(truth_dir))
    return compare(read_pairs(Path(outdir) / "pairs.csv"), truth)


# --------------------------------------------------------------------------- plot

def plot_precision_recall(evaluation: Evaluation, path: Path) -> Path:
    """Write the precision-recall curve with the `linked` decision marked as a PNG; returns `path`.

    matplotlib is imported here, not at module level: it takes a second or more to load and
    only this function needs it. The figure is drawn on an Agg canvas of its own (no pyplot,
    so no global figure state and no interactive backend).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curve = evaluation.curve
    figure = Figure(figsize=(7, 5.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if curve.points:
        recalls = [0.0] + [p.recall for p in curve.points]
        precisions = [curve.points[0].precision] + [p.precision for p in curve.points]
        axes.step(recalls, precisions, where="pre", color="tab:blue",
                  label=f"score >= threshold ({len(curve.points)} thresholds), AP {curve.average_precision:.3f}")
    axes.axvline(curve.max_recall, color="grey", linestyle="--", linewidth=1,
                 label=f"recall ceiling {curve.max_recall:.3f}: {curve.unscored_truth_pairs} of "
                       f"{curve.truth_pairs} truth pairs absent from pairs.csv or scored 0")
    decision = evaluation.decision
    axes.plot([decision.recall], [decision.precision], marker="o", markersize=9, color="tab:red", linestyle="none",
              label=f"linked: precision {decision.precision:.3f}, recall {decision.recall:.3f}, "
                    f"F1 {evaluation.pairwise.f1:.3f}")
    axes.set_xlim(0.0, 1.02)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("recall (of truth linked pairs)")
    axes.set_ylabel("precision")
    axes.set_title("Precision-recall of pairs.csv score")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    except OSError as exc:
        raise OutputError(f"{path}: the curve could not be written ({exc.strerror or exc}); "
                          "give a writable file with --curve") from exc
    return path
