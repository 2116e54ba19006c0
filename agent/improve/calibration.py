"""How good is a critic? Classification and calibration metrics, a reliability diagram, a table.

``calibration_report(scores, labels)`` takes a critic's probabilities and the true labels (e.g. the
held-out rows of ``agent.improve.critic_data``) and returns a frozen ``Calibration``:

- precision, recall, accuracy at ``threshold`` (a score >= threshold predicts True);
- AUC: the probability that a random positive scores above a random negative, ties counting one
  half (Mann–Whitney U with average ranks);
- ECE: ``bins`` equal-width bins over [0, 1] (the last one closed), the mean |mean predicted -
  observed frequency| weighted by each bin's share of the examples; and the per-bin table;
- Brier score: the mean squared difference between score and label.

Undefined metrics are ``None``, never a silent 0: precision when nothing is predicted positive,
recall when there is no positive example, AUC when only one class is present. ``format_table``
prints them as "-". Bad input (no examples, lengths that differ, a score outside [0, 1] or NaN)
raises ValueError.

``reliability_plot`` draws one line per critic against the diagonal with matplotlib (Agg, imported
lazily; ConfigError if it is not installed).

Recalibration is temperature scaling (Guo et al., 2017): ``fit_temperature(scores, targets)`` finds
the one scalar ``T`` that minimises the negative log-likelihood of ``sigmoid(logit(p) / T)`` on a
held-out split (targets may be soft, e.g. Monte-Carlo rates), and ``apply_temperature`` uses it. It
keeps the ranking (AUC) and fixes over- or under-confidence (ECE). The fit is a golden-section
search over ``log T`` in [1/50, 50]: the NLL is convex in ``1/T``, and one dimension needs no
optimiser library. Left out on purpose: confidence intervals, adaptive (equal-mass) bins, threshold
tuning, Platt's bias term and isotonic regression.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ConfigError

__all__ = [
    "PAPER_VALUE_FUNCTION",
    "Bin",
    "Calibration",
    "apply_temperature",
    "calibration_report",
    "fit_temperature",
    "format_table",
    "reliability_plot",
]

# AlphaLLM's value function as the paper reports it (precision, recall, ECE); shown as a reference.
PAPER_VALUE_FUNCTION = {"precision": 0.82, "recall": 0.79, "ece": 0.032}


@dataclass(frozen=True, slots=True)
class Bin:
    """One equal-width bin [lower, upper) (the last one includes 1.0); means are None when empty."""

    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    observed: float | None


@dataclass(frozen=True, slots=True)
class Calibration:
    n: int
    positives: int
    threshold: float
    precision: float | None  # None: nothing predicted positive
    recall: float | None  # None: no positive example
    accuracy: float
    auc: float | None  # None: only one class present
    ece: float
    brier: float
    bins: tuple[Bin, ...]


def calibration_report(
    scores: Sequence[float], labels: Sequence[bool], *, threshold: float = 0.5, bins: int = 10
) -> Calibration:
    """Precision, recall, accuracy, AUC, ECE, Brier and the bin table for one critic."""
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    if not scores:
        raise ValueError("no examples to evaluate")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
    if bins < 1:
        raise ConfigError(f"bins must be at least 1, got {bins}")
    xs = [float(s) for s in scores]
    ys = [bool(y) for y in labels]
    bad = [s for s in xs if not 0.0 <= s <= 1.0]  # NaN fails both comparisons
    if bad:
        raise ValueError(f"scores must be probabilities in [0, 1], got {bad[:3]}")
    predicted = [s >= threshold for s in xs]
    tp = sum(p and y for p, y in zip(predicted, ys, strict=True))
    n_pred, positives = sum(predicted), sum(ys)
    table = _bins(xs, ys, bins)
    n = len(xs)
    return Calibration(
        n=n,
        positives=positives,
        threshold=threshold,
        precision=tp / n_pred if n_pred else None,
        recall=tp / positives if positives else None,
        accuracy=sum(p == y for p, y in zip(predicted, ys, strict=True)) / n,
        auc=_auc(xs, ys),
        ece=sum(b.count / n * abs(x - y) for b, (x, y) in _filled(table)),
        brier=sum((s - y) ** 2 for s, y in zip(xs, ys, strict=True)) / n,
        bins=table,
    )


_EPS = 1e-6


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


def apply_temperature(p: float, temperature: float) -> float:
    """``sigmoid(logit(p) / temperature)``: T > 1 softens over-confident scores, T < 1 sharpens."""
    if not temperature > 0:
        raise ConfigError(f"a temperature must be > 0, got {temperature}")
    z = _logit(p) / temperature
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _nll(scores: Sequence[float], targets: Sequence[float], temperature: float) -> float:
    total = 0.0
    for p, t in zip(scores, targets, strict=True):
        q = min(max(apply_temperature(p, temperature), _EPS), 1.0 - _EPS)
        total -= t * math.log(q) + (1.0 - t) * math.log(1.0 - q)
    return total / len(scores)


def fit_temperature(scores: Sequence[float], targets: Sequence[float]) -> float:
    """The temperature minimising the NLL of ``targets`` (labels or soft rates in [0, 1]) under the
    rescaled ``scores``; 1.0 when there is nothing to fit (no examples, or all targets equal)."""
    if len(scores) != len(targets):
        raise ValueError(f"{len(scores)} scores but {len(targets)} targets")
    ts = [float(t) for t in targets]
    if not scores or min(ts) == max(ts):
        return 1.0
    lo, hi = math.log(1 / 50), math.log(50)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(scores, ts, math.exp(a)), _nll(scores, ts, math.exp(b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _nll(scores, ts, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(scores, ts, math.exp(b))
    return math.exp((lo + hi) / 2)


def _auc(xs: Sequence[float], ys: Sequence[bool]) -> float | None:
    """Mann–Whitney AUC with average ranks for ties; None when a class is missing."""
    n_pos = sum(ys)
    n_neg = len(ys) - n_pos
    if not n_pos or not n_neg:
        return None
    order = sorted(range(len(xs)), key=xs.__getitem__)
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # ranks are 1-based; ties share the mean rank
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, ys, strict=True) if y)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _bins(xs: Sequence[float], ys: Sequence[bool], bins: int) -> tuple[Bin, ...]:
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, s in enumerate(xs):
        members[min(math.floor(s * bins), bins - 1)].append(i)
    table = []
    for b, idx in enumerate(members):
        mean = sum(xs[i] for i in idx) / len(idx) if idx else None
        observed = sum(ys[i] for i in idx) / len(idx) if idx else None
        table.append(Bin(b / bins, (b + 1) / bins, len(idx), mean, observed))
    return tuple(table)


def _filled(table: Sequence[Bin]) -> list[tuple[Bin, tuple[float, float]]]:
    """The non-empty bins with their (mean predicted, observed frequency)."""
    return [
        (b, (b.mean_predicted, b.observed))
        for b in table
        if b.mean_predicted is not None and b.observed is not None
    ]


def format_table(reports: Mapping[str, Calibration], *, reference: bool = True) -> str:
    """A plain-text table, one row per critic; ``reference`` adds the paper's value function."""
    header = ("critic", "n", "P", "R", "Acc", "AUC", "ECE", "Brier")
    rows = [
        (
            name,
            str(r.n),
            _f(r.precision),
            _f(r.recall),
            _f(r.accuracy),
            _f(r.auc),
            _f(r.ece, 3),
            _f(r.brier, 3),
        )
        for name, r in reports.items()
    ]
    if reference:
        ref = PAPER_VALUE_FUNCTION
        rows.append(
            ("paper value fn", "-", _f(ref["precision"]), _f(ref["recall"]), "-", "-", _f(ref["ece"], 3), "-")
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(_pad(row, widths)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _pad(row: Sequence[str], widths: Sequence[int]) -> list[str]:
    """The first column left-aligned (names), the rest right-aligned (numbers)."""
    cells = zip(row, widths, strict=True)
    return [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(cells)]


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def reliability_plot(reports: Mapping[str, Calibration], path: Path) -> None:
    """Write a PNG reliability diagram: observed frequency against mean predicted probability per
    non-empty bin, one line per critic, and the diagonal of perfect calibration."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError("reliability_plot needs matplotlib: pip install matplotlib") from exc
    if not reports:
        raise ValueError("no reports to plot")
    fig = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    for name, report in reports.items():
        points = [xy for _, xy in _filled(report.bins)]
        ax.plot(
            [x for x, _ in points],
            [y for _, y in points],
            marker="o",
            label=f"{name} (ECE {report.ece:.3f}, n={report.n})",
        )
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability", ylabel="observed frequency")
    ax.set_title("Reliability diagram")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
