"""Agreement statistics between an automatic score and human ratings. Pure: numpy + scipy, no I/O.

Statistics (all over the same paired arrays ``metric``, ``human``):

* ``srcc`` Spearman rank correlation, ``krcc`` Kendall tau-b, ``plcc`` Pearson, each with its
  two-sided p-value from scipy.
* ``plcc_fitted``: Pearson after mapping the metric through the 4-parameter logistic of the VQEG
  image/video-quality practice, ``f(x) = b2 + (b1 - b2) / (1 + exp(-(x - b3) / |b4|))``, fitted to the
  human ratings by least squares. The curve may come out decreasing, so this value says how well
  a monotone curve explains the humans, not the direction of the relation (read ``srcc`` for that).
* ``pairwise_acc``: pairwise accuracy with tie calibration (Deutsch et al. 2023, "Ties Matter",
  used by GenAI-Bench). Over every pair of items (or every pair inside one group when ``groups``
  is given), with a tie threshold ``eps`` on the metric (|m_i - m_j| <= eps counts as a tie):

      acc_eq = (C + T_hm) / (C + D + T_h + T_m + T_hm)

  C: metric and humans order the pair the same way, D: opposite ways, T_h: humans tie and the
  metric does not, T_m: the metric ties and the humans do not, T_hm: both tie. ``eps`` is chosen to
  maximise acc_eq ("tie calibration"), so a metric is neither punished for never predicting ties nor
  for its score scale. The chosen threshold is reported as ``pairwise_eps``.
* ``ntire``: (plcc + srcc) / 2, the main score of the NTIRE quality-assessment challenges, from the
  raw (unfitted) PLCC.

Bootstrap confidence intervals are percentile intervals over a seeded resampling of units.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

STATISTICS: tuple[str, ...] = ("srcc", "krcc", "plcc", "plcc_fitted", "pairwise_acc", "ntire")
P_VALUES: tuple[str, ...] = ("srcc_p", "krcc_p", "plcc_p")
# Cheap enough to bootstrap by default; the logistic fit and the pairwise accuracy are opt-in.
DEFAULT_CI_STATISTICS: tuple[str, ...] = ("srcc", "krcc", "plcc", "ntire")
MAX_PAIRS = 20_000_000  # pairwise accuracy holds a few float arrays of this length


class AgreementError(ValueError):
    """The inputs cannot give an agreement statistic (too few items, mismatched lengths...)."""


def _as_pair(metric: Sequence[float] | np.ndarray, human: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(metric, dtype=np.float64)
    y = np.asarray(human, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise AgreementError(f"metric and human must be 1-D arrays of one length (got {x.shape} and {y.shape})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise AgreementError("metric and human must be finite numbers (drop missing values before calling)")
    return x, y


# --- the 4-parameter logistic ------------------------------------------------------------------


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    z = -(x - b3) / abs(b4)
    # Clipping keeps exp() finite; the curve is flat out there anyway.
    return b2 + (b1 - b2) / (1.0 + np.exp(np.clip(z, -500.0, 500.0)))


def fit_logistic4(metric: np.ndarray, human: np.ndarray) -> tuple[float, float, float, float]:
    """Least-squares parameters (b1, b2, b3, b4) in the metric's own units. Raises RuntimeError when
    the fit does not converge (scipy's message is kept)."""
    x, y = _as_pair(metric, human)
    centre, spread = float(np.mean(x)), float(np.std(x))
    if spread == 0.0:
        raise RuntimeError("the metric is constant")
    z = (x - centre) / spread  # fitting on a standard scale makes one starting point work for any metric
    start = [float(np.max(y)), float(np.min(y)), 0.0, 1.0]
    with warnings.catch_warnings():
        # Only the covariance estimate fails with this warning; the parameters are still valid and
        # the covariance is not used.
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        params, _ = optimize.curve_fit(logistic4, z, y, p0=start, maxfev=20000)
    b1, b2, b3, b4 = (float(p) for p in params)
    return b1, b2, centre + b3 * spread, abs(b4) * spread


# --- pairwise accuracy with tie calibration ---------------------------------------------------


@dataclass(frozen=True)
class PairwiseAccuracy:
    accuracy: float
    epsilon: float  # metric differences up to this count as ties
    n_pairs: int
    concordant: int
    discordant: int
    ties_human: int  # humans tie, metric does not
    ties_metric: int  # metric ties, humans do not
    ties_both: int


def _pair_differences(values: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    if groups is None:
        i, j = np.triu_indices(len(values), k=1)
        return values[j] - values[i]
    parts = []
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    bounds = np.flatnonzero(sorted_groups[1:] != sorted_groups[:-1]) + 1
    for members in np.split(order, bounds):
        if len(members) > 1:
            i, j = np.triu_indices(len(members), k=1)
            parts.append(values[members[j]] - values[members[i]])
    return np.concatenate(parts) if parts else np.empty(0)


def pairwise_accuracy(
    metric: Sequence[float] | np.ndarray,
    human: Sequence[float] | np.ndarray,
    *,
    groups: Sequence[object] | np.ndarray | None = None,
    calibrate: bool = True,
) -> PairwiseAccuracy:
    """Pairwise accuracy acc_eq; with ``calibrate`` the tie threshold maximising it (else exact ties only).

    Human ties are always exact ties. The best threshold is found in one pass over the pairs sorted
    by |metric difference|: raising eps past a pair's gap turns that pair into a metric tie, which
    gains a point when humans tie it and loses one when it was concordant.
    """
    x, y = _as_pair(metric, human)
    g = None if groups is None else np.asarray(groups)
    if g is not None and g.shape != x.shape:
        raise AgreementError(f"groups has {g.shape[0]} entries for {x.shape[0]} items")
    n = len(x)
    expected_pairs = n * (n - 1) // 2 if g is None else None
    if expected_pairs is not None and expected_pairs > MAX_PAIRS:
        raise AgreementError(f"{n} items make {expected_pairs:,} pairs (over {MAX_PAIRS:,}); compare within groups")
    dm = _pair_differences(x, g)
    dh = _pair_differences(y, g)
    if dm.size == 0:
        raise AgreementError("no pairs to compare (need at least two items in one group)")
    gap = np.abs(dm)
    human_tie = dh == 0
    agree_sign = np.sign(dm) == np.sign(dh)
    concordant_if_untied = (~human_tie) & agree_sign & (gap > 0)
    order = np.argsort(gap, kind="stable")
    gap_sorted = gap[order]
    # Candidate thresholds: 0 and every distinct gap. For each, pairs with gap <= eps are metric ties.
    candidates = np.unique(np.concatenate([[0.0], gap_sorted]))
    n_tied = np.searchsorted(gap_sorted, candidates, side="right")  # pairs that become metric ties
    cum_human_tie = np.concatenate([[0], np.cumsum(human_tie[order])])
    cum_concordant = np.concatenate([[0], np.cumsum(concordant_if_untied[order])])
    total_concordant = int(cum_concordant[-1])
    correct = cum_human_tie[n_tied] + (total_concordant - cum_concordant[n_tied])
    best = int(np.argmax(correct)) if calibrate else 0  # argmax takes the smallest best eps
    eps = float(candidates[best])
    metric_tie = gap <= eps
    c = int(np.sum(~metric_tie & ~human_tie & agree_sign))
    d = int(np.sum(~metric_tie & ~human_tie & ~agree_sign))
    t_h = int(np.sum(~metric_tie & human_tie))
    t_m = int(np.sum(metric_tie & ~human_tie))
    t_hm = int(np.sum(metric_tie & human_tie))
    n_pairs = int(dm.size)
    return PairwiseAccuracy((c + t_hm) / n_pairs, eps, n_pairs, c, d, t_h, t_m, t_hm)


# --- all statistics at once ---------------------------------------------------------------------


@dataclass
class AgreementResult:
    n: int
    values: dict[str, float | None]  # STATISTICS + P_VALUES + "pairwise_eps"
    ci: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # why a value is missing

    def as_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            **self.values,
            "ci": {k: (list(v) if v else None) for k, v in self.ci.items()},
            "notes": list(self.notes),
        }


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def agreement(
    metric: Sequence[float] | np.ndarray,
    human: Sequence[float] | np.ndarray,
    *,
    groups: Sequence[object] | np.ndarray | None = None,
    which: Sequence[str] = STATISTICS,
) -> AgreementResult:
    """Point estimates of the statistics named in ``which`` (p-values come with their statistic)."""
    x, y = _as_pair(metric, human)
    unknown = [w for w in which if w not in STATISTICS]
    if unknown:
        raise AgreementError(f"unknown statistic {unknown[0]!r}; choose from {', '.join(STATISTICS)}")
    n = len(x)
    values: dict[str, float | None] = {}
    notes: list[str] = []
    if n < 3:
        raise AgreementError(f"need at least 3 paired items, got {n}")
    constant = [name for name, arr in (("metric", x), ("human", y)) if np.ptp(arr) == 0]
    if constant:
        notes.append(f"{' and '.join(constant)} constant: correlations undefined")
        return AgreementResult(n, {k: None for k in (*which, *P_VALUES, "pairwise_eps")}, notes=notes)
    want = set(which) | ({"srcc", "plcc"} if "ntire" in which else set())
    if "srcc" in want:
        r = stats.spearmanr(x, y)
        values["srcc"], values["srcc_p"] = _finite(r.statistic), _finite(r.pvalue)
    if "krcc" in want:
        r = stats.kendalltau(x, y, variant="b")
        values["krcc"], values["krcc_p"] = _finite(r.statistic), _finite(r.pvalue)
    if "plcc" in want:
        r = stats.pearsonr(x, y)
        values["plcc"], values["plcc_p"] = _finite(r.statistic), _finite(r.pvalue)
    if "plcc_fitted" in want and n < 5:
        # Four parameters through four points fit anything: the value would say nothing.
        values["plcc_fitted"] = None
        notes.append(f"plcc_fitted: the 4-parameter logistic needs at least 5 items, got {n}")
    elif "plcc_fitted" in want:
        try:
            mapped = logistic4(x, *fit_logistic4(x, y))
            values["plcc_fitted"] = None if np.ptp(mapped) == 0 else _finite(stats.pearsonr(mapped, y).statistic)
            if values["plcc_fitted"] is None:
                notes.append("plcc_fitted: the fitted logistic is flat")
        except RuntimeError as exc:
            values["plcc_fitted"] = None
            notes.append(f"plcc_fitted: logistic fit failed ({exc})")
    if "pairwise_acc" in want and groups is None and n * (n - 1) // 2 > MAX_PAIRS:
        # The other statistics are still worth having; say how to get this one.
        values["pairwise_acc"] = values["pairwise_eps"] = None
        notes.append(f"pairwise_acc: {n} items make over {MAX_PAIRS:,} pairs; compare within groups (--pairs-within)")
    elif "pairwise_acc" in want and groups is not None and len(groups) == n and len(np.unique(np.asarray(groups))) == n:
        # Every group holds one item (e.g. one image per prompt): the other statistics still stand.
        values["pairwise_acc"] = values["pairwise_eps"] = None
        notes.append("pairwise_acc: no pairs to compare (every group has a single item)")
    elif "pairwise_acc" in want:
        pa = pairwise_accuracy(x, y, groups=groups)
        values["pairwise_acc"], values["pairwise_eps"] = pa.accuracy, pa.epsilon
    if "ntire" in want:
        s, p = values.get("srcc"), values.get("plcc")
        values["ntire"] = None if s is None or p is None else (s + p) / 2
    return AgreementResult(n, values, notes=notes)


# --- bootstrap ---------------------------------------------------------------------------------


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def resample(rng: np.random.Generator, n: int) -> np.ndarray:
    """Indices of one bootstrap resample of ``n`` units (with replacement)."""
    return rng.integers(0, n, size=n)


def bootstrap(
    statistic: Callable[[np.random.Generator], Mapping[str, float | None]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[dict[str, tuple[float, float] | None], list[str]]:
    """Percentile CIs of each value ``statistic(rng)`` returns; ``statistic`` draws its own resample
    from the generator (items, models, items within models...), so one seed fixes every interval.

    Resamples where a value is undefined (e.g. all-equal scores) are left out of that value's
    interval and counted in the notes; if more than half are undefined the interval is None.
    """
    if not 0.0 < confidence < 1.0:
        raise AgreementError(f"confidence must be between 0 and 1, got {confidence}")
    if n_boot < 1:
        raise AgreementError(f"n_boot must be positive, got {n_boot}")
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    undefined: dict[str, int] = {}
    for _ in range(n_boot):
        for name, value in statistic(rng).items():
            if value is None or not math.isfinite(value):
                undefined[name] = undefined.get(name, 0) + 1
            else:
                draws.setdefault(name, []).append(value)
    intervals: dict[str, tuple[float, float] | None] = {}
    notes: list[str] = []
    for name in sorted(set(draws) | set(undefined)):
        bad = undefined.get(name, 0)
        if bad:
            notes.append(f"{name}: undefined in {bad} of {n_boot} bootstrap resamples")
        intervals[name] = percentile_interval(np.asarray(draws[name]), confidence) if bad * 2 <= n_boot else None
    return intervals, notes
