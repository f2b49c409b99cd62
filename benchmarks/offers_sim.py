"""Proof that the offers learn: email campaigns to simulated customers through the HTTP API.

    python -m benchmarks.offers_sim [--customers 600] [--rounds 20] [--seed 1] [--seeds 5]
                                    [--explore-share S]

A population in three groups (their features put them in three context cells) has hidden true
response rates per offer and group. For each scenario -- ``wrong`` (the hand-set priors rank the
offers in reverse of the truth) and ``right`` (the true rates are the priors) -- and each policy
-- ``adaptive`` (the service as shipped), ``static`` (``RECSYS_OFFERS__ADAPTIVE=false``: the
hand-set rules) and ``random`` (a uniformly drawn offer, chosen by the simulator) -- a fresh
``recsys serve`` (uvicorn, embedded Redis) runs ``--rounds`` campaigns: ``POST /v1/offers/batch``
(email, k=1, a seed per round), then ``offer_sent`` for every offer handed out and an
``offer_redeemed`` for every simulated response, as ``POST /v1/events``. Printed: cumulative
conversions and expected regret (best true rate of the customer's group minus the chosen offer's,
summed) per policy, and the adaptive policy's gain over the static one. With ``--seeds N`` the
whole run is repeated for the seeds ``seed .. seed + N - 1`` (population, responses and Thompson
draws all follow the seed) and the mean gain per scenario is printed with its 95% interval (Student
t over the seeds; a policy pair differs significantly only when the interval excludes 0).

The bundle is the serving tests' known-answer model (``tests/serving/servingkit.py``) with the
simulated customers and offer set in it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "serving"))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from recsys.bundle import write_bundle  # noqa: E402
from recsys.decisions.offer_set import parse_offer_set  # noqa: E402
from recsys.decisions.offers import propensity  # noqa: E402

READ = {"X-API-Key": "sim-read-key-0123456789"}
WRITE = {"X-API-Key": "sim-write-key-0123456789"}
API_KEYS = f"{READ['X-API-Key']}:read,{WRITE['X-API-Key']}:write"

#: The offers: one of each type whose rule reads the features below, equal value and cost, so
#: that the ranking is the propensity's.
OFFERS: dict[str, Any] = {
    "contact_policy": {"caps": {}, "cooldown_days": 0},
    "offers": [
        {"offer_id": oid, "type": kind, "title": oid, "value": 30.0, "cost": 0.5,
         "channels": ["email"]}
        for oid, kind in (
            ("discount", "discount"),
            ("loyalty", "loyalty_reward"),
            ("win-back", "win_back"),
            ("review", "review_request"),
        )
    ],
}  # fmt: skip
#: The groups' features (the bundle's feature rows): loyal regulars, lapsing, recent one-timers.
GROUPS: dict[str, dict[str, Any]] = {
    "regular": {"frequency": 8, "avg_order_value": 50.0, "monetary": 400.0, "churn_risk": 0.1,
                "clv": 300.0, "orders_90d": 3, "orders_30d": 1, "recency_days": 5.0},
    "lapsing": {"frequency": 3, "avg_order_value": 30.0, "monetary": 90.0, "churn_risk": 0.8,
                "clv": 60.0, "orders_90d": 0, "orders_30d": 0, "recency_days": 100.0},
    "one-timer": {"frequency": 1, "avg_order_value": 20.0, "monetary": 20.0, "churn_risk": 0.5,
                  "clv": 20.0, "orders_90d": 1, "orders_30d": 0, "recency_days": 40.0},
}  # fmt: skip
OFFER_IDS = [o["offer_id"] for o in OFFERS["offers"]]
#: The random streams of one seed: the population's groups and the simulated responses, each
#: its own (``default_rng((seed, stream))``), and apart from the service's Thompson draws
#: (``default_rng(seed + round)``). One stream for all would tie the first round's responses
#: and explorations to the customers' groups (a group that never converts in round 1).
POPULATION, RESPONSES = 0, 1


def priors() -> np.ndarray:
    """The hand-set propensity of each offer for each group, ``(groups, offers)``."""
    types = [o["type"] for o in OFFERS["offers"]]
    return np.array([[float(propensity(t, dict(f))[0]) for t in types] for f in GROUPS.values()])


def true_rates(scenario: str) -> np.ndarray:
    """``right``: the priors. ``wrong``: in each group the priors in reverse rank order, the
    truly best offer 0.05 better still."""
    prior = priors()
    if scenario == "right":
        return prior
    out = np.empty_like(prior)
    for g, row in enumerate(prior):
        order = np.argsort(row)  # lowest prior first
        out[g, order] = np.sort(row)[::-1]
        out[g, order[0]] += 0.05
    return np.clip(out, 0.0, 1.0)


def make_root(customers: list[str], groups: list[str], root: Path) -> Path:
    import pandas as pd
    from servingkit import make_offers_bundle  # the tests' known-answer model

    bundle = make_offers_bundle()
    template = bundle.features.iloc[0].to_dict()
    # the template's as-of time, so that each group's last purchase agrees with its recency
    # (an event recomputes recency_days from last_purchase_at)
    as_of = pd.Timestamp(template["last_purchase_at"]) + pd.Timedelta(
        days=float(template["recency_days"])
    )
    rows = []
    for customer, group in zip(customers, groups, strict=True):
        row = dict(template)
        for name in ("segment", "journey_stage", "nps", "r_score", "f_score", "m_score"):
            row.pop(name, None)
        row.update(
            GROUPS[group],
            customer_id=customer,
            days_since_last_event=GROUPS[group]["recency_days"],
            last_purchase_at=as_of - pd.Timedelta(days=GROUPS[group]["recency_days"]),
            avg_repeat_order_value=GROUPS[group]["avg_order_value"],
        )
        rows.append(row)
    import scipy.sparse as sp

    n = len(customers)
    bundle.customer_ids = np.array(customers)
    bundle.user_factors = np.tile(bundle.user_factors[:1], (n, 1))
    first = bundle.history[:1]
    bundle.history = sp.vstack([first] * n).tocsr()
    bundle.history_last_days = bundle.history.copy()
    bundle.features = pd.DataFrame(rows)
    bundle.extra = {**bundle.extra, "offers": OFFERS}
    parse_offer_set(OFFERS)  # fails early on a bad catalogue
    write_bundle(bundle, root)
    return root


@dataclass
class Outcome:
    conversions: list[int]
    regret: list[float]


Post = Callable[[str, dict[str, Any], dict[str, str]], dict[str, Any]]


def campaign(
    post: Post | None,
    customers: list[str],
    group_of: np.ndarray,
    truth: np.ndarray,
    rounds: int,
    seed: int,
) -> Outcome:
    """Run the rounds; ``post`` None: the random policy (no service decisions)."""
    rng = np.random.default_rng((seed, RESPONSES))
    best = truth.max(axis=1)
    conversions, regret = [], []
    total_c, total_r = 0, 0.0
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=rounds + 1)
    if post is not None:  # every customer's first event: one context cell from the start
        opens = [
            {"customer_id": c, "event_type": "email_open", "timestamp": start.isoformat()}
            for c in customers
        ]
        for i in range(0, len(opens), 1000):
            post("/v1/events", {"events": opens[i : i + 1000]}, WRITE)
    for r in range(rounds):
        at = start + timedelta(hours=r + 1)
        if post is None:
            chosen = rng.integers(0, len(OFFER_IDS), len(customers))
        else:
            body = {"customer_ids": customers, "channel": "email", "k": 1, "seed": seed + r}
            answer = post("/v1/offers/batch", body, READ)
            index = {o: j for j, o in enumerate(OFFER_IDS)}
            chosen = np.array(
                [index[res["offers"][0]["offer_id"]] if res["offers"] else -1
                 for res in answer["results"]]
            )  # fmt: skip
        rate = np.where(chosen >= 0, truth[group_of, np.maximum(chosen, 0)], 0.0)
        converted = rng.random(len(customers)) < rate
        total_c += int(converted.sum())
        total_r += float((best[group_of] - rate).sum())
        conversions.append(total_c)
        regret.append(total_r)
        if post is None:
            continue
        events: list[dict[str, Any]] = []
        for i, customer in enumerate(customers):
            if chosen[i] < 0:
                continue
            props = {"offer_id": OFFER_IDS[chosen[i]], "channel": "email"}
            events.append({"customer_id": customer, "event_type": "offer_sent",
                           "timestamp": at.isoformat(), "properties": props})  # fmt: skip
            if converted[i]:
                when = (at + timedelta(minutes=5)).isoformat()
                events.append({"customer_id": customer, "event_type": "offer_redeemed",
                               "timestamp": when, "properties": props})  # fmt: skip
        for i in range(0, len(events), 1000):
            post("/v1/events", {"events": events[i : i + 1000]}, WRITE)
    return Outcome(conversions, regret)


def http_post(base: str) -> Post:
    client = httpx.Client(base_url=base, timeout=120.0)

    def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        response = client.post(path, json=body, headers=headers)
        if response.status_code >= 400:
            raise RuntimeError(f"{path}: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result

    return post


def population(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng((seed, POPULATION))
    customers = [f"sim-{i:05d}" for i in range(n)]
    return customers, rng.integers(0, len(GROUPS), n)


def gain_interval(gains: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """The mean of per-seed gains and its Student-t interval (``nan`` bounds for one seed)."""
    from scipy import stats

    values = np.asarray(gains, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * stats.sem(values))
    return mean, mean - half, mean + half


def one_seed(args: argparse.Namespace, seed: int) -> dict[str, dict[str, Outcome]]:
    """Every scenario and policy for one seed, printed as it goes."""
    from benchmarks.server import serving

    customers, group_of = population(args.customers, seed)
    names = list(GROUPS)
    found: dict[str, dict[str, Outcome]] = {}
    # its embedded Redis may still be closing when the directory goes
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        root = make_root(customers, [names[g] for g in group_of], Path(tmp) / "artifacts")
        print(f"\nseed {seed}: {args.customers} customers, {args.rounds} email rounds")
        for scenario in ("wrong", "right"):
            truth = true_rates(scenario)
            results: dict[str, Outcome] = {}
            for policy in ("adaptive", "static", "random"):
                if policy == "random":
                    results[policy] = campaign(None, customers, group_of, truth, args.rounds, seed)
                    continue
                env = {
                    "RECSYS_API_KEYS": API_KEYS,
                    "RECSYS_OFFERS__ADAPTIVE": str(policy == "adaptive").lower(),
                    "RECSYS_REDIS_PREFIX": f"sim-{scenario}-{policy}-{seed}-{os.getpid()}",
                }
                if args.explore_share is not None:
                    env["RECSYS_OFFERS__EXPLORE_SHARE"] = str(args.explore_share)
                with serving(root, env=env) as base:
                    results[policy] = campaign(
                        http_post(base), customers, group_of, truth, args.rounds, seed
                    )
            print(f"  scenario {scenario}:")
            for policy, out in results.items():
                marks = [out.conversions[min(i, args.rounds) - 1] for i in (1, 5, 10, args.rounds)]
                print(f"    {policy:9s} conversions after rounds 1/5/10/{args.rounds}: {marks}; "
                      f"regret {out.regret[-1]:.1f}")  # fmt: skip
            a, s = results["adaptive"].conversions[-1], results["static"].conversions[-1]
            print(f"    adaptive vs static: {100 * (a / max(s, 1) - 1):+.1f}% conversions")
            found[scenario] = results
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds, from --seed on")
    parser.add_argument(
        "--explore-share", type=float, default=None, help="RECSYS_OFFERS__EXPLORE_SHARE"
    )
    args = parser.parse_args()
    print(f"offers {OFFER_IDS}; hand-set priors per group:",
          {n: priors()[g].round(3).tolist() for g, n in enumerate(GROUPS)})  # fmt: skip
    for scenario in ("wrong", "right"):
        truth = true_rates(scenario)
        print(f"true rates, priors {scenario}:",
              {n: truth[g].round(3).tolist() for g, n in enumerate(GROUPS)})  # fmt: skip
    runs = [one_seed(args, seed) for seed in range(args.seed, args.seed + max(args.seeds, 1))]
    print(f"\nover {len(runs)} seeds from {args.seed} (mean, 95% interval):")
    for scenario in ("wrong", "right"):
        pairs = [(r[scenario]["adaptive"], r[scenario]["static"]) for r in runs]
        pct = [100 * (a.conversions[-1] / max(s.conversions[-1], 1) - 1) for a, s in pairs]
        diff = [float(a.conversions[-1] - s.conversions[-1]) for a, s in pairs]
        m, lo, hi = gain_interval(pct)
        dm, dlo, dhi = gain_interval(diff)
        static = np.mean([s.conversions[-1] for _, s in pairs])
        adaptive = np.mean([a.conversions[-1] for a, _ in pairs])
        print(f"  priors {scenario}: adaptive {adaptive:,.1f} vs static {static:,.1f} conversions; "
              f"gain {m:+.2f}% [{lo:+.2f}%, {hi:+.2f}%], {dm:+.1f} [{dlo:+.1f}, {dhi:+.1f}]; "
              f"per seed {[round(v, 2) for v in pct]}")  # fmt: skip


if __name__ == "__main__":
    main()
