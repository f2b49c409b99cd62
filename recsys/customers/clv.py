"""Customer lifetime value: BG/NBD for the number of purchases, Gamma-Gamma for their value.

Models (time in **days**; a "transaction" is an order of ``recsys.customers.features``):

* **BG/NBD** (Fader, Hardie & Lee 2005, "Counting your customers the easy way"). While alive a
  customer buys at rate ``lambda ~ Gamma(r, alpha)``; after each purchase they drop out with
  probability ``p ~ Beta(a, b)``. Inputs per customer: ``x`` repeat purchases (orders - 1),
  ``t_x`` days from the first to the last purchase, ``T`` days from the first purchase to
  ``as_of``. The log-likelihood (their eq. 6) is maximized with ``scipy.optimize.minimize``
  (L-BFGS-B) over the logarithms of ``(r, alpha, a, b)``, so the parameters stay positive.
  Predictions: expected purchases in the next ``t`` days (eq. 10, Gauss hypergeometric
  ``scipy.special.hyp2f1``) and ``P(alive)`` (eq. 11 of the note "Computing P(alive)").
* **Gamma-Gamma** (Fader, Hardie & Lee 2005, "RFM and CLV", section 4). The spend per order
  varies around a customer mean ``zeta``; ``1/zeta`` is Gamma distributed (``p, q, gamma``).
  Fitted on customers with at least one repeat order and a positive mean repeat order value
  ``m_x``; the conditional expected order value is
  ``(gamma + m_x * x) * p / (p * x + q - 1)``, a weighted mean of the population mean
  ``p * gamma / (q - 1)`` and ``m_x``; customers without a repeat order get the population mean.

:class:`CLVModel` combines them: ``clv = expected purchases over horizon x expected order value``
(undiscounted, net of nothing: a spend forecast). Customers who never bought get 0.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

log = logging.getLogger(__name__)

_LOG_BOUNDS = (-12.0, 12.0)
#: The penalizer of a refit after a fit that did not converge (lifetimes' usual advice).
FALLBACK_PENALIZER = 1e-3
#: Days at the start of the data whose first purchases may be older customers' (CLVModel.fit).
CENSOR_DAYS = 30.0
#: Customers first seen after those days needed for a newcomers' BG/NBD of their own.
MIN_NEWCOMERS = 100
DAY = pd.Timedelta(days=1)


def _fit_log_params(nll: Any, n_params: int, max_iter: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The positive parameters minimizing ``nll`` over their logarithms, and how the fit went.

    L-BFGS-B first; when it does not report success (``result.success``), Powell from the
    same start, and the better of the two is kept. The report (``converged``, ``method``,
    ``message``, ``nll``) says which; callers record it, so a fit that did not converge is
    visible in the manifest rather than silently served.
    """
    tried = []
    for method in ("L-BFGS-B", "Powell"):
        result = minimize(
            nll,
            x0=np.zeros(n_params),
            method=method,
            bounds=[_LOG_BOUNDS] * n_params,
            options={"maxiter": max_iter * (1 if method == "L-BFGS-B" else 4)},
        )
        if np.all(np.isfinite(result.x)) and np.isfinite(result.fun):
            tried.append((bool(result.success), -float(result.fun), method, result))
        if result.success:
            break
    if not tried:
        raise ValueError("CLV model fit failed: no finite optimum")
    converged, _, method, best = max(tried, key=lambda t: (t[0], t[1]))
    report = {
        "converged": converged,
        "method": method,
        "message": str(best.message),
        "nll": float(best.fun),
    }
    if not converged:
        log.warning("CLV fit did not converge (%s): %s", method, best.message)
    return np.exp(best.x), report


class BetaGeoModel:
    """BG/NBD; ``fit(x, t_x, T)`` with arrays in days (see the module docstring)."""

    def __init__(self, penalizer: float = 0.0, max_iter: int = 500) -> None:
        self.penalizer = penalizer
        self.max_iter = max_iter

    @staticmethod
    def log_likelihood(
        params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """Per-customer log-likelihood (Fader, Hardie & Lee 2005, eq. 6)."""
        r, alpha, a, b = params
        ln_a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        ln_a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
        ln_a3 = -(r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            ln_a4 = np.log(a) - np.log(b + x - 1) - (r + x) * np.log(alpha + t_x)
        ln_a4 = np.where(x > 0, ln_a4, -np.inf)
        return ln_a1 + ln_a2 + np.logaddexp(ln_a3, ln_a4)

    def fit(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BetaGeoModel:
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        if x.size == 0:
            raise ValueError("BG/NBD needs at least one customer")

        def nll(log_params: np.ndarray) -> float:
            params = np.exp(log_params)
            ll = self.log_likelihood(params, x, t_x, T).sum()
            return float(-ll / x.size + self.penalizer * np.sum(log_params**2))

        (self.r_, self.alpha_, self.a_, self.b_), self.fit_report_ = _fit_log_params(
            nll, 4, self.max_iter
        )
        return self

    @property
    def params_(self) -> dict[str, float]:
        return {"r": self.r_, "alpha": self.alpha_, "a": self.a_, "b": self.b_}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BetaGeoModel:
        """The inverse of :attr:`params_`."""
        model = cls()
        model.r_, model.alpha_, model.a_, model.b_ = (
            float(params[k]) for k in ("r", "alpha", "a", "b")
        )
        return model

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_ratio = (
                np.log(a) - np.log(b + x - 1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
            )
        return np.where(x > 0, 1.0 / (1.0 + np.exp(np.minimum(log_ratio, 700.0))), 1.0)

    def expected_purchases(
        self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """Expected purchases in the next ``t`` days (eq. 10)."""
        x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
        r, alpha, a, b = self.r_, self.alpha_, self.a_, self.b_
        if abs(a - 1.0) < 1e-9:  # removable singularity of the closed form
            a = 1.0 + 1e-9
        z = t / (alpha + T + t)
        hyp = hyp2f1(r + x, b + x, a + b + x - 1.0, z)
        head = (a + b + x - 1.0) / (a - 1.0)
        body = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            tail = (a / (b + x - 1.0)) * ((alpha + T) / (alpha + t_x)) ** (r + x)
        denom = 1.0 + np.where(x > 0, tail, 0.0)
        out = head * body / denom
        return np.where(np.isfinite(out), np.maximum(out, 0.0), 0.0)


class GammaGammaModel:
    """Gamma-Gamma spend model; ``fit(x, m_x)`` on customers with ``x > 0`` and ``m_x > 0``."""

    def __init__(self, penalizer: float = 0.0, max_iter: int = 500) -> None:
        self.penalizer = penalizer
        self.max_iter = max_iter

    @staticmethod
    def log_likelihood(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        p, q, gamma = params
        px = p * x
        return (
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(gamma)
            + (px - 1.0) * np.log(m)
            + px * np.log(x)
            - (px + q) * np.log(gamma + m * x)
        )

    def fit(self, x: np.ndarray, m: np.ndarray) -> GammaGammaModel:
        x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
        keep = (x > 0) & (m > 0) & np.isfinite(m)
        x, m = x[keep], m[keep]
        if x.size < 2:
            raise ValueError("Gamma-Gamma needs at least two customers with repeat orders")
        scale = float(np.mean(m))  # fit on m / scale for a well-conditioned optimum

        def nll(log_params: np.ndarray) -> float:
            params = np.exp(log_params)
            ll = self.log_likelihood(params, x, m / scale).sum()
            return float(-ll / x.size + self.penalizer * np.sum(log_params**2))

        (p, q, gamma), self.fit_report_ = _fit_log_params(nll, 3, self.max_iter)
        self.p_, self.q_, self.gamma_ = float(p), float(q), float(gamma * scale)
        return self

    @property
    def params_(self) -> dict[str, float]:
        return {"p": self.p_, "q": self.q_, "gamma": self.gamma_}

    @property
    def population_mean_(self) -> float:
        q = max(self.q_, 1.0 + 1e-6)
        return self.p_ * self.gamma_ / (q - 1.0)

    def expected_order_value(
        self, x: np.ndarray, m: np.ndarray, first: np.ndarray | None = None
    ) -> np.ndarray:
        """The conditional expected order value given ``x`` repeat orders of mean ``m``.

        A customer without a usable repeat order but with a positive ``first`` order value
        (one order so far) is conditioned on that one order, as on one repeat order: a value
        shrunk from the population mean toward the first order, by the weight of one order.
        Without either they get the population mean.
        """
        x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
        q = max(self.q_, 1.0 + 1e-6)
        usable = (x > 0) & (m > 0) & np.isfinite(m)
        one = np.zeros_like(usable)
        if first is not None:
            first = np.asarray(first, dtype=np.float64)
            one = ~usable & (first > 0) & np.isfinite(first)
            m = np.where(one, first, m)
        given = usable | one
        xs = np.where(usable, x, np.where(one, 1.0, 0.0))
        ms = np.where(given, m, 0.0)
        cond = (self.gamma_ + ms * xs) * self.p_ / (self.p_ * xs + q - 1.0)
        return np.where(given, cond, self.population_mean_)


def _days(value: Any) -> float:
    """A time (ISO text, datetime, Timestamp) in days since the epoch; NaN when missing."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return np.nan
    stamp = pd.Timestamp(value)
    return np.nan if stamp is pd.NaT else stamp.value / 86_400e9


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


def clv_inputs(features: pd.DataFrame | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``x, t_x, T, m`` (days, currency) from feature rows (a table or one feature dict).

    ``t_x`` and ``T`` come from ``first_purchase_at``/``recency_days`` and
    ``last_purchase_at``; ``T = t_x + recency_days``, so no ``as_of`` is needed. ``first`` is
    the value of a one-order customer's order (``avg_order_value``; NaN otherwise).
    """
    if isinstance(features, Mapping):  # the online path: no DataFrame (milliseconds) for a row
        first_day = np.array([_days(features.get("first_purchase_at"))])
        t_x = np.array([_days(features.get("last_purchase_at"))]) - first_day
        recency, freq, m, aov = (
            np.array([_number(features.get(name))])
            for name in ("recency_days", "frequency", "avg_repeat_order_value", "avg_order_value")
        )
    else:
        # each value on its own: ISO text with and without a zone can share a column
        first = pd.to_datetime(features["first_purchase_at"], format="mixed", utc=True)
        last = pd.to_datetime(features["last_purchase_at"], format="mixed", utc=True)
        t_x = ((last - first) / DAY).to_numpy(np.float64)
        first_day = (first.dt.tz_localize(None) - pd.Timestamp(0)) / DAY
        first_day = first_day.to_numpy(np.float64)
        recency = pd.to_numeric(features["recency_days"], errors="coerce").to_numpy(np.float64)
        freq = pd.to_numeric(features["frequency"], errors="coerce").to_numpy(np.float64)
        m = pd.to_numeric(features["avg_repeat_order_value"], errors="coerce").to_numpy(np.float64)
        aov = (
            pd.to_numeric(features["avg_order_value"], errors="coerce").to_numpy(np.float64)
            if "avg_order_value" in features.columns
            else np.full(len(features), np.nan)
        )
    bought = (freq > 0) & np.isfinite(t_x) & np.isfinite(recency)
    x = np.where(bought, np.maximum(freq - 1.0, 0.0), 0.0)
    t_x = np.where(bought, t_x, 0.0)
    T = np.where(bought, t_x + recency, 0.0)
    first = np.where(bought & (freq == 1), aov, np.nan)  # one order: its value is the mean
    return {
        "x": x,
        "t_x": t_x,
        "T": T,
        "m": np.where(x > 0, m, np.nan),
        "first": first,
        "first_day": first_day,  # the first purchase, days since the epoch (NaN: none)
        "bought": bought,
    }


class CLVModel:
    """BG/NBD x Gamma-Gamma on the customer feature table; ``predict`` adds CLV columns."""

    def __init__(self, horizon_days: int = 365, penalizer: float = 0.0) -> None:
        self.horizon_days = horizon_days
        self.penalizer = penalizer
        self.bgnbd_new_: BetaGeoModel | None = None
        self.newcomers_since_: float | None = None  # days since the epoch

    def fit(self, features: pd.DataFrame, data_start: Any = None) -> CLVModel:
        """Both models on the buyers; a fit that does not converge is refitted with
        :data:`FALLBACK_PENALIZER` (an L2 pull of the log parameters toward 0), and what
        happened is kept in :attr:`fit_report_` (``to_dict()["fit"]``, the manifest's).

        **Newcomers.** The customers of the data's first :data:`CENSOR_DAYS` include old ones
        whose earlier orders the data do not hold: as "new" customers they are the loyal ones,
        and a BG/NBD prior fitted on everyone expects a new customer to buy far more than a new
        customer does (measured on the development data: customers first seen from 2011-03-15
        bought 1.24 orders in the next 152 days, the all-customer prior said 2.06, one fitted
        on the customers first seen after the first month 1.33). With ``data_start`` and at
        least :data:`MIN_NEWCOMERS` such customers, a second BG/NBD (:attr:`bgnbd_new_`) is
        fitted on the customers whose first purchase is after ``data_start + CENSOR_DAYS``
        and predicts for every customer whose first purchase is after that date, a customer
        new since training included: new customers are shrunk toward new customers.
        """
        inp = clv_inputs(features)
        keep = inp["bought"]
        x, t_x, big_t, m = inp["x"][keep], inp["t_x"][keep], inp["T"][keep], inp["m"][keep]
        bg, bg_report = self._fit_part(lambda pen: BetaGeoModel(pen).fit(x, t_x, big_t))
        gg, gg_report = self._fit_part(lambda pen: GammaGammaModel(pen).fit(x, m))
        self.bgnbd_, self.gamma_gamma_ = bg, gg
        self.fit_report_: dict[str, Any] = {"bgnbd": bg_report, "gamma_gamma": gg_report}
        if data_start is not None:
            since = _days(data_start) + CENSOR_DAYS
            late = keep & (inp["first_day"] >= since)
            if late.sum() >= MIN_NEWCOMERS:
                xs, txs, ts = inp["x"][late], inp["t_x"][late], inp["T"][late]
                new, new_report = self._fit_part(lambda pen: BetaGeoModel(pen).fit(xs, txs, ts))
                self.bgnbd_new_, self.newcomers_since_ = new, since
                self.fit_report_["bgnbd_newcomers"] = {**new_report, "customers": int(late.sum())}
        return self

    def _bgnbd_rows(self, inp: dict[str, np.ndarray]) -> np.ndarray:
        """True where a customer is predicted by the newcomers' BG/NBD."""
        if self.bgnbd_new_ is None or self.newcomers_since_ is None:
            return np.zeros(inp["x"].shape, dtype=bool)
        return inp["first_day"] >= self.newcomers_since_

    def _fit_part(self, fit: Any) -> tuple[Any, dict[str, Any]]:
        model = fit(self.penalizer)
        report = {**model.fit_report_, "penalizer": self.penalizer}
        if report["converged"] or self.penalizer >= FALLBACK_PENALIZER:
            return model, report
        retry = fit(FALLBACK_PENALIZER)
        log.warning(
            "CLV: refitted with penalizer %s (converged: %s)",
            FALLBACK_PENALIZER,
            retry.fit_report_["converged"],
        )
        fallback = {**retry.fit_report_, "penalizer": FALLBACK_PENALIZER, "fallback": True}
        return retry, {**fallback, "first_try": report}

    def predict(
        self, features: pd.DataFrame | Mapping[str, Any], horizon_days: float | None = None
    ) -> pd.DataFrame:
        """Columns ``clv``, ``expected_purchases``, ``p_alive``, ``expected_order_value``."""
        return pd.DataFrame(self.predict_arrays(features, horizon_days))

    def predict_arrays(
        self, features: pd.DataFrame | Mapping[str, Any], horizon_days: float | None = None
    ) -> dict[str, np.ndarray]:
        """:meth:`predict`'s columns as arrays (no DataFrame: the online path's one row)."""
        t = float(self.horizon_days if horizon_days is None else horizon_days)
        inp = clv_inputs(features)
        bought = inp["bought"]
        purchases = self.bgnbd_.expected_purchases(t, inp["x"], inp["t_x"], inp["T"])
        alive = self.bgnbd_.p_alive(inp["x"], inp["t_x"], inp["T"])
        new = self._bgnbd_rows(inp)
        if self.bgnbd_new_ is not None and new.any():
            args = (inp["x"], inp["t_x"], inp["T"])
            purchases = np.where(new, self.bgnbd_new_.expected_purchases(t, *args), purchases)
            alive = np.where(new, self.bgnbd_new_.p_alive(*args), alive)
        value = self.gamma_gamma_.expected_order_value(inp["x"], inp["m"], inp["first"])
        purchases = np.where(bought, purchases, 0.0)
        return {
            "clv": purchases * value,
            "expected_purchases": purchases,
            "p_alive": np.where(bought, alive, 0.0),
            "expected_order_value": value,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "horizon_days": self.horizon_days,
            "bgnbd": self.bgnbd_.params_,
            "gamma_gamma": self.gamma_gamma_.params_,
            "fit": getattr(self, "fit_report_", None),
            **(
                {
                    "bgnbd_newcomers": self.bgnbd_new_.params_,
                    "newcomers_since": (pd.Timestamp(0) + self.newcomers_since_ * DAY).isoformat(),
                }
                if self.bgnbd_new_ is not None and self.newcomers_since_ is not None
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CLVModel:
        model = cls(horizon_days=int(data["horizon_days"]))
        bg = BetaGeoModel.from_params(data["bgnbd"])
        gg = GammaGammaModel()
        gg.p_, gg.q_, gg.gamma_ = (float(data["gamma_gamma"][k]) for k in ("p", "q", "gamma"))
        model.bgnbd_, model.gamma_gamma_ = bg, gg
        if data.get("bgnbd_newcomers") and data.get("newcomers_since"):
            model.bgnbd_new_ = BetaGeoModel.from_params(data["bgnbd_newcomers"])
            model.newcomers_since_ = _days(data["newcomers_since"])
        return model
