"""Critic calibration: every metric on hand-computed examples, undefined metrics as None, property
tests for AUC / ECE / Brier, the text table with the paper's reference row, and the PNG plot."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ConfigError
from agent.improve import PAPER_VALUE_FUNCTION, calibration_report, format_table, reliability_plot

SCORES = [0.1, 0.4, 0.35, 0.8]
LABELS = [False, False, True, True]


def test_metrics_on_a_hand_computed_example() -> None:
    r = calibration_report(SCORES, LABELS)
    assert (r.n, r.positives, r.threshold) == (4, 2, 0.5)
    assert r.precision == 1.0  # only 0.8 is predicted positive, and it is
    assert r.recall == 0.5
    assert r.accuracy == 0.75
    assert r.auc == pytest.approx(0.75)  # 3 of the 4 (positive, negative) pairs are ordered right
    assert r.brier == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    # bins 1, 3, 4, 8 hold one score each: |0.1-0|, |0.35-1|, |0.4-0|, |0.8-1|, each weighted 1/4
    assert r.ece == pytest.approx((0.1 + 0.65 + 0.4 + 0.2) / 4)
    assert [b.count for b in r.bins] == [0, 1, 0, 1, 1, 0, 0, 0, 1, 0]
    assert r.bins[3].mean_predicted == 0.35 and r.bins[3].observed == 1.0
    assert r.bins[0].mean_predicted is None and r.bins[0].observed is None
    assert (r.bins[0].lower, r.bins[-1].upper) == (0.0, 1.0)


def test_threshold_moves_precision_and_recall() -> None:
    r = calibration_report(SCORES, LABELS, threshold=0.3)  # predicted: 0.4, 0.35, 0.8
    assert (r.precision, r.recall, r.accuracy) == pytest.approx((2 / 3, 1.0, 0.75))


def test_auc_counts_ties_as_one_half() -> None:
    # pairs: (0.5+, 0.5-) twice -> 1/2 each; (0.9+, 0.5-) twice -> 1 each: (1 + 2) / 4
    assert calibration_report([0.5, 0.5, 0.5, 0.9], [True, False, False, True]).auc == pytest.approx(0.75)
    assert calibration_report([0.3] * 4, [True, False, True, False]).auc == pytest.approx(0.5)
    assert calibration_report([0.2, 0.2, 0.7], [True, False, False]).auc == pytest.approx(0.25)


def test_ece_with_known_bins() -> None:
    # 2 bins: [0, .5) holds 0.2, 0.4 (mean .3, observed .5); [.5, 1] holds 0.6, 0.9 (mean .75, observed 1)
    r = calibration_report([0.2, 0.4, 0.6, 0.9], [False, True, True, True], bins=2)
    assert r.ece == pytest.approx(0.5 * 0.2 + 0.5 * 0.25)
    assert [b.count for b in r.bins] == [2, 2]
    assert [b.mean_predicted for b in r.bins] == pytest.approx([0.3, 0.75])
    assert [b.observed for b in r.bins] == [0.5, 1.0]
    edges = calibration_report([0.0, 0.5, 1.0], [False, True, True], bins=2)
    assert [b.count for b in edges.bins] == [1, 2]  # 0.5 starts the upper bin, 1.0 closes it
    assert calibration_report([0.5] * 4, [True, False] * 2).ece == pytest.approx(0.0)


def test_undefined_metrics_are_none_not_zero() -> None:
    nothing_predicted = calibration_report([0.1, 0.2], [True, False])
    assert nothing_predicted.precision is None and nothing_predicted.recall == 0.0
    no_positives = calibration_report([0.1, 0.9], [False, False])
    assert no_positives.recall is None and no_positives.auc is None and no_positives.precision == 0.0
    assert calibration_report([0.9], [True]).auc is None


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="no examples"):
        calibration_report([], [])
    with pytest.raises(ValueError, match="2 scores but 1 labels"):
        calibration_report([0.1, 0.2], [True])
    for bad in (math.nan, 1.2, -0.1):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            calibration_report([0.5, bad], [True, False])
    with pytest.raises(ConfigError, match="bins"):
        calibration_report(SCORES, LABELS, bins=0)
    with pytest.raises(ConfigError, match="threshold"):
        calibration_report(SCORES, LABELS, threshold=1.5)


grid = st.integers(0, 20).map(lambda k: k / 20)  # exact flips: 1 - k/20 keeps ties and order
examples = st.lists(st.tuples(grid, st.booleans()), min_size=1, max_size=40)


def brute_force_auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))


@settings(max_examples=150, deadline=None)
@given(examples)
def test_auc_properties(pairs: list[tuple[float, bool]]) -> None:
    scores, labels = [s for s, _ in pairs], [y for _, y in pairs]
    r = calibration_report(scores, labels)
    if all(labels) or not any(labels):
        assert r.auc is None
        return
    assert r.auc is not None and 0.0 <= r.auc <= 1.0
    assert r.auc == pytest.approx(brute_force_auc(scores, labels))
    flipped = calibration_report([1 - s for s in scores], labels).auc
    assert flipped == pytest.approx(1 - r.auc)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10), st.integers(1, 10), st.floats(0.0, 0.49), st.floats(0.51, 1.0))
def test_perfect_separation_gives_auc_one(n_neg: int, n_pos: int, low: float, high: float) -> None:
    r = calibration_report([low] * n_neg + [high] * n_pos, [False] * n_neg + [True] * n_pos)
    assert r.auc == 1.0 and r.accuracy == 1.0 and r.precision == 1.0 and r.recall == 1.0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.booleans()), min_size=1, max_size=40), st.integers(1, 15))
def test_ece_and_brier_are_probabilities(pairs: list[tuple[float, bool]], bins: int) -> None:
    r = calibration_report([s for s, _ in pairs], [y for _, y in pairs], bins=bins)
    assert 0.0 <= r.ece <= 1.0 and 0.0 <= r.brier <= 1.0
    assert sum(b.count for b in r.bins) == r.n and len(r.bins) == bins


def test_format_table_has_every_column_and_the_paper_row() -> None:
    text = format_table(
        {"value": calibration_report(SCORES, LABELS), "orm": calibration_report([0.9, 0.8], [True, True])}
    )
    lines = text.splitlines()
    assert lines[0].split() == ["critic", "n", "P", "R", "Acc", "AUC", "ECE", "Brier"]
    assert lines[2].split() == [
        "value",
        "4",
        "1.00",
        "0.50",
        "0.75",
        "0.75",
        "0.337",
        "0.158",
    ]  # ECE 0.3375 in binary is a hair below
    assert lines[3].split()[5] == "-"  # one class: AUC undefined
    assert lines[-1].split() == ["paper", "value", "fn", "-", "0.82", "0.79", "-", "-", "0.032", "-"]
    assert PAPER_VALUE_FUNCTION == {"precision": 0.82, "recall": 0.79, "ece": 0.032}
    assert "paper" not in format_table({"value": calibration_report(SCORES, LABELS)}, reference=False)


def test_reliability_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "reliability.png"
    reports = {
        "value": calibration_report(SCORES, LABELS),
        "orm": calibration_report([0.9, 0.2], [True, False]),
    }
    reliability_plot(reports, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["reliability.png"]
    with pytest.raises(ValueError, match="no reports"):
        reliability_plot({}, path)


def test_reliability_plot_without_matplotlib_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match="pip install matplotlib"):
        reliability_plot({"value": calibration_report(SCORES, LABELS)}, tmp_path / "r.png")


def test_fit_temperature_recovers_an_overconfident_critic() -> None:
    """Scores that are sigmoid(3 z) for labels drawn with probability sigmoid(z): T is about 3, the
    ranking is kept and the ECE falls."""
    import math
    import random

    from agent.improve.calibration import apply_temperature, fit_temperature

    rng = random.Random(0)
    zs = [rng.gauss(0, 1.5) for _ in range(4000)]
    labels = [rng.random() < 1 / (1 + math.exp(-z)) for z in zs]
    scores = [1 / (1 + math.exp(-3 * z)) for z in zs]
    t = fit_temperature(scores, [float(y) for y in labels])
    assert 2.6 < t < 3.4
    fixed = [apply_temperature(p, t) for p in scores]
    before, after = calibration_report(scores, labels), calibration_report(fixed, labels)
    assert after.auc == pytest.approx(before.auc) and after.ece < 0.5 * before.ece and after.ece < 0.03
    assert fit_temperature(scores[:10], [1.0] * 10) == 1.0  # one class: nothing to fit
    assert apply_temperature(0.8, 1.0) == pytest.approx(0.8)
    with pytest.raises(ConfigError):
        apply_temperature(0.5, 0.0)
