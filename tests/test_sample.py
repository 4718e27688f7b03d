"""Accuracy bars on the public sample (../shared/samples/market-s), scored by ../shared/bench/score.py.

The sample is necessary, not sufficient: nothing in assoc is keyed to it. These tests only
guard against regressions on data whose truth is public.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from assoc import Settings, read_bundle, scan
from assoc.report import write_scan_outputs

SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLE = SHARED / "samples" / "market-s"

pytestmark = pytest.mark.skipif(not SAMPLE.is_dir(), reason="../shared/samples/market-s is not here")


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> dict:
    spec = importlib.util.spec_from_file_location("bench_score", SHARED / "bench" / "score.py")
    scorer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scorer)
    out = tmp_path_factory.mktemp("sample-scan")
    settings = Settings(cache_dir=tmp_path_factory.mktemp("cache"))
    write_scan_outputs(scan(read_bundle(SAMPLE / "bundle"), settings), out, settings)
    return scorer.score(str(SAMPLE / "truth"), str(out))


def test_identity_bars(scores):
    assert scores["pairwise"]["precision"] >= 0.97
    assert scores["recall_by_why"]["operator_strong"]["recall"] >= 0.95


def test_pairwise_f1_bar_including_catalog_only_links(scores):
    assert scores["pairwise"]["f1"] >= 0.95


def test_clusters_beat_the_all_singletons_baseline(scores):
    assert scores["bcubed_operators"]["f1"] > scores["bcubed_baseline_all_singletons"]["f1"] + 0.15


def test_catalog_overlap_bars(scores):
    catalog = scores["catalog_overlap"]
    assert catalog["missing_from_pairs"] == 0 and catalog["present_without_value"] == 0
    assert catalog["mae"] <= 0.03
    assert catalog["decision_accuracy_at_0_30"] >= 0.98
    assert catalog["spurious_ge_0_30_claims"] == 0
    assert scores["recall_by_why"]["overlap_only"]["recall"] == 1.0
