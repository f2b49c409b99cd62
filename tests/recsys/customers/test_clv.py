from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.customers.clv import BetaGeoModel, CLVModel, GammaGammaModel, clv_inputs

BG_TRUE = {"r": 0.8, "alpha": 30.0, "a": 0.8, "b": 2.5}
GG_TRUE = {"p": 6.0, "q": 4.0, "gamma": 15.0}


def simulate_bgnbd(n: int, horizon: float, seed: int = 0) -> dict[str, np.ndarray]:
    """BG/NBD customers observed for T days after their first purchase, then ``horizon`` more."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(BG_TRUE["r"], 1.0 / BG_TRUE["alpha"], n)
    p = rng.beta(BG_TRUE["a"], BG_TRUE["b"], n)
    T = rng.uniform(100, 300, n)
    times = np.cumsum(rng.exponential(1.0 / lam[:, None], (n, 400)), axis=1)
    alive = np.arange(1, 401)[None, :] <= rng.geometric(p)[:, None]  # dies after the J-th repeat
    seen = alive & (times < T[:, None])
    later = alive & (times >= T[:, None]) & (times < (T + horizon)[:, None])
    x = seen.sum(axis=1)
    t_x = np.where(x > 0, np.max(np.where(seen, times, 0.0), axis=1), 0.0)
    return {"x": x, "t_x": t_x, "T": T, "future": later.sum(axis=1)}


@pytest.fixture(scope="module")
def simulated() -> dict[str, np.ndarray]:
    return simulate_bgnbd(4000, horizon=90.0)


def test_bgnbd_recovers_known_parameters(simulated):
    model = BetaGeoModel().fit(simulated["x"], simulated["t_x"], simulated["T"])
    for name, true in BG_TRUE.items():
        assert model.params_[name] == pytest.approx(true, rel=0.3), name


def test_bgnbd_expected_purchases_match_the_simulated_future(simulated):
    model = BetaGeoModel().fit(simulated["x"], simulated["t_x"], simulated["T"])
    predicted = model.expected_purchases(90.0, simulated["x"], simulated["t_x"], simulated["T"])
    assert predicted.sum() == pytest.approx(simulated["future"].sum(), rel=0.1)
    assert np.corrcoef(predicted, simulated["future"])[0, 1] > 0.5


def test_p_alive_is_one_without_repeat_and_falls_with_silence_after_the_last_purchase():
    model = BetaGeoModel()
    model.r_, model.alpha_, model.a_, model.b_ = 0.8, 30.0, 0.8, 2.5
    x, t_x = np.array([0.0, 5.0, 5.0]), np.array([0.0, 100.0, 20.0])
    alive = model.p_alive(x, t_x, np.array([100.0, 100.0, 100.0]))
    # bought at T: dead only if the last purchase was the final one, a / (b + x - 1)
    assert alive[0] == 1.0 and alive[1] == pytest.approx(1.0 / (1.0 + 0.8 / 6.5))
    assert alive[2] < 0.5


def test_gamma_gamma_recovers_parameters_and_shrinks_to_the_mean():
    rng = np.random.default_rng(1)
    n = 5000
    nu = rng.gamma(GG_TRUE["q"], 1.0 / GG_TRUE["gamma"], n)
    x = rng.integers(1, 10, n).astype(float)
    m = rng.gamma(GG_TRUE["p"] * x, 1.0 / (x * nu))
    model = GammaGammaModel().fit(x, m)
    for name, true in GG_TRUE.items():
        assert model.params_[name] == pytest.approx(true, rel=0.25), name
    expected = model.expected_order_value(
        np.array([0.0, 1.0, 50.0]), np.array([np.nan, 99.0, 99.0])
    )
    assert expected[0] == pytest.approx(model.population_mean_)
    assert model.population_mean_ < expected[1] < expected[2] < 99.0


AS_OF = pd.Timestamp("2024-07-01")


def _train_table(simulated: dict[str, np.ndarray], repeat_values: np.ndarray | None = None):
    """The simulated customers as a feature table at :data:`AS_OF`."""
    x, t_x, T = simulated["x"], simulated["t_x"], simulated["T"]
    if repeat_values is None:
        rng = np.random.default_rng(3)
        repeat_values = np.where(x > 0, rng.gamma(5.0, 10.0, x.size), np.nan)
    return pd.DataFrame(
        {
            "frequency": x + 1,
            "recency_days": T - t_x,
            "first_purchase_at": AS_OF - pd.to_timedelta(T, unit="D"),
            "last_purchase_at": AS_OF - pd.to_timedelta(T - t_x, unit="D"),
            "avg_repeat_order_value": repeat_values,
        }
    )


def _first_order_today(now: pd.Timestamp) -> dict:
    """A customer whose first and only order is at ``now`` (its value not given)."""
    return {
        "frequency": 1,
        "recency_days": 0.0,
        "first_purchase_at": str(now),
        "last_purchase_at": str(now),
        "avg_repeat_order_value": None,
    }


def _features() -> pd.DataFrame:
    as_of = pd.Timestamp("2024-07-01")
    return pd.DataFrame(
        {
            "frequency": [0, 1, 4, 6],
            "recency_days": [np.nan, 10.0, 5.0, 80.0],
            "first_purchase_at": [
                pd.NaT,
                as_of - pd.Timedelta(days=10),
                as_of - pd.Timedelta(days=100),
                as_of - pd.Timedelta(days=200),
            ],
            "last_purchase_at": [
                pd.NaT,
                as_of - pd.Timedelta(days=10),
                as_of - pd.Timedelta(days=5),
                as_of - pd.Timedelta(days=80),
            ],
            "avg_repeat_order_value": [np.nan, np.nan, 50.0, 20.0],
        }
    )


def test_clv_inputs_from_the_feature_table():
    inp = clv_inputs(_features())
    assert inp["x"].tolist() == [0, 0, 3, 5]
    assert inp["t_x"].tolist() == [0, 0, 95, 120]
    assert inp["T"].tolist() == [0, 10, 100, 200]


def test_clv_is_purchases_times_value_zero_for_non_buyers_and_same_for_one_dict(simulated):
    train = _train_table(simulated)
    model = CLVModel(horizon_days=365).fit(train)
    table = model.predict(_features())
    assert table["clv"].iloc[0] == 0.0 and table["p_alive"].iloc[0] == 0.0
    assert np.allclose(table["clv"], table["expected_purchases"] * table["expected_order_value"])
    assert (table["clv"].iloc[1:] > 0).all()
    one = model.predict(_features().iloc[2].to_dict())
    assert one["clv"].iloc[0] == pytest.approx(table["clv"].iloc[2])
    again = CLVModel.from_dict(model.to_dict()).predict(_features())
    pd.testing.assert_frame_equal(again, table)


def test_clv_inputs_read_naive_and_zoned_times_in_one_column() -> None:
    from recsys.customers.clv import clv_inputs

    table = pd.DataFrame(
        {
            "first_purchase_at": ["2011-01-01 10:00:00", "2026-01-01T10:00:00+00:00"],
            "last_purchase_at": ["2011-01-11 10:00:00", "2026-01-21T10:00:00.500+00:00"],
            "recency_days": [5.0, 1.0],
            "frequency": [3, 2],
            "avg_repeat_order_value": [10.0, 20.0],
        }
    )
    t_x = clv_inputs(table)["t_x"]
    assert t_x[0] == 10.0
    assert abs(t_x[1] - 20.0) < 1e-4


def _fitted_gamma_gamma() -> GammaGammaModel:
    model = GammaGammaModel()
    model.p_, model.q_, model.gamma_ = 2.0, 3.0, 400.0  # population mean 2 * 400 / 2 = 400
    return model


def test_a_one_order_customer_is_shrunk_from_the_population_toward_their_order() -> None:
    gg = _fitted_gamma_gamma()
    x, m = np.zeros(3), np.full(3, np.nan)
    value = gg.expected_order_value(x, m, np.array([1.79, 2000.0, np.nan]))
    # conditioned on one order of v: (gamma + v) * p / (p + q - 1) = (400 + v) / 2
    assert value[0] == pytest.approx((400 + 1.79) / 2)
    assert value[1] == pytest.approx((400 + 2000.0) / 2)
    assert value[2] == pytest.approx(gg.population_mean_)  # no order value: the population


def test_a_tiny_first_order_no_longer_gets_the_population_clv(simulated) -> None:
    model = CLVModel(horizon_days=365).fit(_train_table(simulated))
    new = _first_order_today(AS_OF)
    tiny = model.predict_arrays({**new, "avg_order_value": 1.79})
    big = model.predict_arrays({**new, "avg_order_value": 500.0})
    unknown = model.predict_arrays(new)
    population = model.gamma_gamma_.population_mean_
    assert unknown["expected_order_value"][0] == pytest.approx(population)
    assert 1.79 < tiny["expected_order_value"][0] < population < big["expected_order_value"][0]
    assert tiny["clv"][0] < unknown["clv"][0] < big["clv"][0]
    # the table path gives the same as the dict path
    table = model.predict(pd.DataFrame([{**new, "avg_order_value": 1.79}]))
    assert table["clv"].iloc[0] == pytest.approx(tiny["clv"][0])


def test_fits_report_convergence_and_fall_back_when_they_do_not_converge(simulated) -> None:
    fitted = BetaGeoModel().fit(simulated["x"], simulated["t_x"], simulated["T"])
    assert fitted.fit_report_["converged"] is True
    stopped = BetaGeoModel(max_iter=1).fit(simulated["x"], simulated["t_x"], simulated["T"])
    assert stopped.fit_report_["converged"] is False  # one iteration: not an optimum

    class OneStep(CLVModel):
        def _fit_part(self, fit):  # the first try stops after one iteration
            return super()._fit_part(lambda pen: _one_step(fit, pen))

    def _one_step(fit, pen):
        model = fit(pen)
        if pen == 0.0:
            model.fit_report_ = {**model.fit_report_, "converged": False}
        return model

    x = simulated["x"]
    train = _train_table(simulated, np.where(x > 0, 40.0 + x, np.nan))
    model = OneStep().fit(train)
    report = model.to_dict()["fit"]["bgnbd"]
    assert report["fallback"] is True and report["penalizer"] > 0
    assert report["first_try"]["converged"] is False and report["converged"] is True
    assert CLVModel().fit(train).to_dict()["fit"]["bgnbd"]["converged"] is True


def test_new_customers_get_the_prior_of_customers_first_seen_after_the_censored_start() -> None:
    """The data start: old loyal customers (many orders) first appear in its first days;
    customers acquired later buy rarely. A new customer is predicted like the latter."""
    start = pd.Timestamp("2024-01-01")
    as_of = pd.Timestamp("2024-12-31")
    old = simulate_bgnbd(600, horizon=1.0, seed=5)  # r/alpha = 0.027 a day
    rng = np.random.default_rng(6)
    n_new = 400
    rows = []
    for k in range(old["x"].size):  # first purchase on the data's first days
        first = start + pd.Timedelta(days=float(rng.uniform(0, 5)))
        big_t = float((as_of - first) / pd.Timedelta(days=1))
        x = int(old["x"][k] * 3)
        t_x = float(rng.uniform(0.5, 1.0) * big_t) if x else 0.0
        rows.append((x + 1, first, first + pd.Timedelta(days=t_x), big_t - t_x))
    for _ in range(n_new):  # later, rare buyers
        first = start + pd.Timedelta(days=float(rng.uniform(60, 300)))
        big_t = float((as_of - first) / pd.Timedelta(days=1))
        x = int(rng.random() < 0.2)
        t_x = float(rng.uniform(0, big_t)) if x else 0.0
        rows.append((x + 1, first, first + pd.Timedelta(days=t_x), big_t - t_x))
    table = pd.DataFrame(
        rows, columns=["frequency", "first_purchase_at", "last_purchase_at", "recency_days"]
    )
    table["avg_repeat_order_value"] = np.where(table["frequency"] > 1, 50.0, np.nan)
    table["avg_order_value"] = 50.0
    everyone = CLVModel().fit(table)
    split = CLVModel().fit(table, data_start=start)
    report = split.to_dict()["fit"]["bgnbd_newcomers"]
    assert report["customers"] == n_new and report["converged"] is True
    new = {**_first_order_today(as_of), "avg_order_value": 50.0}
    shrunk = split.predict_arrays(new)["expected_purchases"][0]
    assert shrunk < 0.5 * everyone.predict_arrays(new)["expected_purchases"][0]
    # an old customer keeps the all-customer model
    first_old = table.iloc[[0]]
    assert split.predict(first_old)["clv"].iloc[0] == pytest.approx(
        everyone.predict(first_old)["clv"].iloc[0]
    )
    again = CLVModel.from_dict(split.to_dict())
    assert again.predict_arrays(new)["clv"][0] == pytest.approx(split.predict_arrays(new)["clv"][0])
    pd.testing.assert_frame_equal(again.predict(table), split.predict(table))
