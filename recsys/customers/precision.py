"""How many decimals a customer figure means: what a profile shows, rounded once, here.

A churn risk of ``0.4234719`` or a CLV of ``1655.19688021`` claims a precision the models do not
have. :func:`rounded` gives each known feature its meaningful precision (money: cents;
probabilities and shares: 4 decimals; days: whole days; counts and scores: as they are, or
2 decimals for means and expected counts) and leaves every other value as it is. Whole numbers
stay ``float`` where they were (the schema types them as numbers); days become ``int``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

MONEY: Final = 2
PROBABILITY: Final = 4
RATE: Final = 2
DAYS: Final = 0

#: Decimals per feature name; ``DAYS`` (0) means a whole number of days, an ``int``.
DECIMALS: Final[Mapping[str, int]] = {
    **dict.fromkeys(
        (
            "monetary",
            "avg_order_value",
            "avg_repeat_order_value",
            "spend_30d",
            "spend_90d",
            "clv",
        ),
        MONEY,
    ),
    **dict.fromkeys(
        ("churn_risk", "p_alive", "return_rate", "top_category_share"),
        PROBABILITY,
    ),
    **dict.fromkeys(
        ("expected_purchases_365d", "nps_mean", "csat_mean", "ces_mean"),
        RATE,
    ),
    **dict.fromkeys(
        (
            "recency_days",
            "tenure_days",
            "days_since_last_event",
            "inter_purchase_mean_days",
            "inter_purchase_std_days",
        ),
        DAYS,
    ),
}


def round_value(name: str, value: Any) -> Any:
    """``value`` at the precision of feature ``name`` (unknown names, non-numbers and
    non-finite numbers are returned as they are)."""
    decimals = DECIMALS.get(name)
    if decimals is None or isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if not math.isfinite(value):
        return value
    if decimals == DAYS:
        return int(round(value))
    return round(float(value), decimals)


def rounded(features: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``features`` with every known figure rounded (module docstring)."""
    return {name: round_value(name, value) for name, value in features.items()}
