"""The ``seasonal`` analyzer: a SARIMA forecast of the target batch's metric, as WhyLabs' backend computes it.

WhyLabs' backend (``SeasonalCalculation`` + its Python ``pmdarima`` function) does, per target:

1. fewer baseline values with data than ``minBatchSize`` (schema default 30) → no decision
   (Driftline: ``failure="InsufficientBaseline"`` like every other analyzer);
2. batches missing data take the previous batch's value (forward fill);
3. baseline batches inside ``stddevTimeRanges`` (special events) are left out of the series — unless
   the target itself is inside one;
4. fewer than :data:`MIN_ARIMA_POINTS` (30) values left → the **stddev fallback**: the median of the
   last 30 values ± ``stddevFactor`` · the population stddev of the values (the whole series when
   fewer than 3 were left);
5. else SARIMA ``(p,d,q)(P,D,Q)m`` = ``(1,0,0)(2,1,0)7`` with an intercept, not forced stationary
   (``params`` may override each order and ``alpha``), fitted by L-BFGS (50 iterations) and asked for
   a one-step forecast with its ``1 - alpha`` confidence interval; a fit that fails falls back to
   step 4.  The interval is clamped to ``forecast ± stddev·stddevFactor`` (sample stddev of the whole
   forward-filled series), then to ``[min - stddev·stddevFactor, max + stddev·stddevFactor]`` of it
   (the forecast becomes the midpoint when that moved a bound);
6. ``minLowerThreshold`` / ``maxUpperThreshold`` clamp the bounds; anomaly when the target is below
   the lower or above the upper bound (``thresholdType`` makes it one-sided), strictly.

Not done: the backend's feedback loop that replaces anomalous values of *later* baselines with a
random draw from the forecast interval — it is random by design, and Driftline's results must be a
function of the data.  Leading baseline batches without data (nothing to forward-fill from) are
dropped rather than failing the fit.  ``stddevMaxBatchSize`` is accepted and, as in the backend,
not used by the calculation.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from stream.analysis.monitor_config import SeasonalConfig, TimeRange

__all__ = ["MIN_ARIMA_POINTS", "Forecast", "SarimaOrder", "forecast_bounds", "sarima_order"]

MIN_ARIMA_POINTS = 30
DEFAULT_ALPHA = 0.05
DEFAULT_MIN_BATCH_SIZE = 30  # SeasonalConfig.minBatchSize default of WhyLabs' schema
DEFAULT_STDDEV_FACTOR = 1.0
ARIMA_MAXITER = 50  # pmdarima's ARIMA.fit default, which the backend uses


@dataclasses.dataclass(frozen=True)
class SarimaOrder:
    """ARIMA ``(p, d, q)`` and seasonal ``(P, D, Q, m)`` orders plus the interval's ``alpha``."""

    p: int = 1
    d: int = 0
    q: int = 0
    P: int = 2
    D: int = 1
    Q: int = 0
    m: int = 7
    alpha: float = DEFAULT_ALPHA


def sarima_order(config: SeasonalConfig) -> SarimaOrder:
    """The backend's defaults, ``alpha`` from the config, each overridable through ``params``."""
    params = config.params or {}
    base = SarimaOrder(alpha=float(config.alpha) if config.alpha is not None else DEFAULT_ALPHA)
    ints: dict[str, int] = {k: int(params[k]) for k in ("p", "d", "q", "P", "D", "Q", "m") if k in params}
    alpha = float(params["alpha"]) if "alpha" in params else base.alpha
    return dataclasses.replace(base, alpha=alpha, **ints)


@dataclasses.dataclass(frozen=True)
class Forecast:
    """The prediction for the target batch and the band around it (before static thresholds)."""

    forecast: float
    lower: float
    upper: float
    method: str  # "arima" | "stddev_fallback"
    points: int  # values the model was fitted on
    stddev: float


def _in_ranges(ts_ms: int, ranges: Sequence[TimeRange]) -> bool:
    for r in ranges:
        lo, hi = r.bounds()
        if lo.timestamp() * 1000 <= ts_ms < hi.timestamp() * 1000:
            return True
    return False


def _ffill(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    idx = np.where(np.isnan(values), 0, np.arange(len(values)))
    np.maximum.accumulate(idx, out=idx)
    out = values[idx]
    return np.asarray(out, dtype=np.float64)


def _stddev_fallback(kept: npt.NDArray[np.float64], series: npt.NDArray[np.float64], factor: float) -> Forecast:
    base = kept if len(kept) >= 3 else series
    base = base[~np.isnan(base)]
    median = float(np.median(base[-MIN_ARIMA_POINTS:]))
    sd = float(np.std(base))
    return Forecast(median, median - factor * sd, median + factor * sd, "stddev_fallback", len(base), sd)


def _arima(values: npt.NDArray[np.float64], order: SarimaOrder) -> tuple[float, float, float] | None:
    """(forecast, lower, upper) of a one-step SARIMA forecast; None when the fit fails."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX  # heavy import: only seasonal analyzers need it

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter; a useless fit is caught below
            model = SARIMAX(values, order=(order.p, order.d, order.q),
                            seasonal_order=(order.P, order.D, order.Q, order.m), trend="c",
                            enforce_stationarity=False)
            fit = model.fit(method="lbfgs", maxiter=ARIMA_MAXITER, disp=False)
            pred = fit.get_forecast(1)
            mean = float(np.asarray(pred.predicted_mean)[0])
            lo, hi = (float(v) for v in np.asarray(pred.conf_int(alpha=order.alpha))[0])
    except Exception:  # as the backend: any failed fit falls back to the stddev band
        return None
    if not all(math.isfinite(v) for v in (mean, lo, hi)):
        return None
    return mean, lo, hi


def forecast_bounds(config: SeasonalConfig, values: Sequence[float | None], timestamps: Sequence[int],
                    target_ms: int) -> Forecast:
    """Steps 2-5 of the module doc for one target: ``values`` per baseline batch, oldest first
    (``None`` = no data), ``timestamps`` their batch starts (epoch ms), ``target_ms`` the target's."""
    if len(values) != len(timestamps):
        raise ValueError("values and timestamps differ in length")
    factor = float(config.stddevFactor) if config.stddevFactor is not None else DEFAULT_STDDEV_FACTOR
    raw = np.asarray([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    ts = np.asarray(timestamps, dtype=np.int64)
    first = int(np.argmax(~np.isnan(raw))) if np.any(~np.isnan(raw)) else len(raw)
    series, ts = _ffill(raw[first:]), ts[first:]
    if len(series) == 0:
        raise ValueError("no baseline values")
    events = config.stddevTimeRanges or []
    kept = series
    if events and not _in_ranges(target_ms, events):
        mask = np.asarray([_in_ranges(int(t), events) for t in ts], dtype=bool)
        kept = series[~mask]
    if len(kept) < MIN_ARIMA_POINTS:
        return _stddev_fallback(kept, series, factor)
    fitted = _arima(kept, sarima_order(config))
    if fitted is None:
        return _stddev_fallback(kept, series, factor)
    forecast, lower, upper = fitted
    sd = float(np.std(series, ddof=1))
    lower, upper = max(lower, forecast - sd * factor), min(upper, forecast + sd * factor)
    abs_min, abs_max = float(np.min(series)) - sd * factor, float(np.max(series)) + sd * factor
    if upper > abs_max or lower < abs_min:
        upper, lower = min(upper, abs_max), max(lower, abs_min)
        forecast = (upper + lower) / 2
    return Forecast(forecast, lower, upper, "arima", len(kept), sd)
