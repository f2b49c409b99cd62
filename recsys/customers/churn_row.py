"""The churn model input of ONE feature dict in plain Python floats (the single-event path).

:func:`recsys.customers.churn.churn_rows` builds rows with column-wise numpy: about 30 array
operations, each costing microseconds of call overhead on a one-row array, plus ``p_alive``
through ``clv_inputs`` (a ``pd.Timestamp`` per date). A single event re-scores one customer, so
:func:`churn_row` computes the same numbers in Python floats (IEEE double, the same operations
in the same order as the numpy code) and builds one small ``float32`` array at the end. The
logarithms and the exponential of ``p_alive`` stay numpy's (one call on four values), so they
are the very functions the table path uses. It declines (None) whatever it does not handle
exactly the same way -- a value that is not a plain number or None, a date that is not the ISO
text the online features write, a logarithm of a non-positive number -- and the caller takes
the numpy path. ``tests/recsys/customers/test_churn_row.py`` checks it against training's
pandas input bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import numpy as np

from recsys.customers.churn import BASE_FEATURES, CHURN_FEATURES, MISSING
from recsys.customers.clv import BetaGeoModel

_GRID: Final = 1024.0
_NAN: Final = math.nan
_EPOCH: Final = datetime(1970, 1, 1)
_NS_PER_DAY: Final = 86_400e9
#: ISO text as ``recsys.customers.online_state.to_iso`` writes it (seconds, or microseconds)
_ISO_LENGTHS: Final = frozenset({19, 26})


def _maximum(a: float, b: float) -> float:
    """``np.maximum(a, b)`` for a constant ``b`` (never NaN): NaN stays NaN."""
    return a if a != a or a >= b else b


def _divide(a: float, b: float) -> float:
    """``a / b`` as numpy gives it, except that a zero divisor gives NaN (numpy: ±inf or NaN;
    every non-finite result becomes MISSING alike)."""
    return a / b if b != 0.0 else _NAN


def _grid(value: float) -> float:
    """``np.round(value * 1024) / 1024`` (half to even), non-finite as NaN."""
    scaled = value * _GRID
    if not math.isfinite(scaled):
        return _NAN
    rounded = round(scaled) / _GRID
    return rounded if rounded != 0.0 else math.copysign(0.0, scaled)


def _plain(value: Any) -> float | None:
    """A plain number or None as float64 (None: NaN); None for anything else (decline)."""
    kind = type(value)
    if kind is float:
        return float(value)
    if value is None:
        return _NAN
    if kind is int or kind is bool:
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def _days(value: Any) -> float | None:
    """``clv._days`` of ISO text as ``to_iso`` writes it (days since the epoch), computed from
    the exact nanosecond count as ``pd.Timestamp(value).value / 86_400e9``; NaN for None;
    None (decline) for anything else."""
    if value is None:
        return _NAN
    if type(value) is not str or len(value) not in _ISO_LENGTHS:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        return None
    delta = moment - _EPOCH
    ns = ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000
    return ns / _NS_PER_DAY


def _p_alive(row: Mapping[str, Any], base: dict[str, float], alive: BetaGeoModel) -> float | None:
    """``churn._p_alive_rows`` of one row (``clv_inputs`` then ``BetaGeoModel.p_alive``)."""
    first_day = _days(row.get("first_purchase_at"))
    last_day = _days(row.get("last_purchase_at"))
    if first_day is None or last_day is None:
        return None
    t_x = last_day - first_day
    recency, freq = base["recency_days"], base["frequency"]
    if not (freq > 0 and math.isfinite(t_x) and math.isfinite(recency)):
        return _NAN  # not bought
    x = _maximum(freq - 1.0, 0.0)
    if not x > 0:
        return 1.0
    big_t = t_x + recency
    r, alpha, a, b = (float(v) for v in (alive.r_, alive.alpha_, alive.a_, alive.b_))
    arguments = (a, b + x - 1, alpha + big_t, alpha + t_x)
    if not all(v > 0 for v in arguments):  # numpy would warn (log of 0 or below): its path
        return None
    log_a, log_b, log_t, log_tx = np.log(np.array(arguments)).tolist()
    log_ratio = log_a - log_b + (r + x) * (log_t - log_tx)
    if log_ratio == log_ratio:  # np.minimum keeps NaN
        log_ratio = min(log_ratio, 700.0)
    return float(1.0 / (1.0 + np.exp(log_ratio)))


def churn_row(row: Mapping[str, Any], alive: BetaGeoModel | None = None) -> np.ndarray | None:
    """``churn_rows([row], alive)``, ``float32 (1, len(CHURN_FEATURES))``, or None where this
    plain path declines (see the module docstring)."""
    base: dict[str, float] = {}
    for name in BASE_FEATURES:
        value = _plain(row.get(name))
        if value is None:
            return None
        base[name] = value
    p_alive = _NAN if alive is None else _p_alive(row, base, alive)
    if p_alive is None:
        return None
    recency, freq = base["recency_days"], base["frequency"]
    gap_mean, gap_std = base["inter_purchase_mean_days"], base["inter_purchase_std_days"]
    tenure, o30, o90 = base["tenure_days"], base["orders_30d"], base["orders_90d"]
    expected_90d = freq * 90.0 / _maximum(tenure, 90.0) if freq > 0 else _NAN
    derived = (
        _divide(recency, _maximum(gap_mean, 1.0)),
        _divide(freq, _maximum(tenure / 30.0, 1.0)),
        _divide(gap_std, _maximum(gap_mean, 1.0)),
        _divide(recency - gap_mean, _maximum(gap_std, 1.0)),
        _divide(o90, expected_90d),
        _divide(o30, o90 if o90 > 0 else _NAN),
        _divide(base["n_items_distinct"], freq if freq > 0 else _NAN),
        p_alive,
    )
    values = [v if math.isfinite(v) else MISSING for v in base.values()]
    values += [v if v == v else MISSING for v in map(_grid, derived)]
    out = np.array(values, dtype=np.float32).reshape(1, len(CHURN_FEATURES))
    return out
