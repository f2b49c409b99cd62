"""Known-answer interaction tables: two disjoint groups of customers, each buying its own
cluster of items (implicit's checker-board idea, with orders, dates and a re-orderer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.schema import INTERACTION_COLUMNS

START = pd.Timestamp("2024-01-01")
CLUSTER_A = [f"A{i}" for i in range(6)]
CLUSTER_B = [f"B{i}" for i in range(6)]


def rows_for(
    customer: str, items: list[str], day: int, order: str, event_type: str = "purchase"
) -> list[dict[str, object]]:
    return [
        {
            "customer_id": customer,
            "event_type": event_type,
            "timestamp": START + pd.Timedelta(days=day, hours=10),
            "item_id": item,
            "quantity": 2.0,
            "price": 1.5,
            "order_id": order,
            "properties": None,
            "is_product": item != "POST",
            "event_id": None,
        }
        for item in items
    ]


def clustered_interactions(seed: int = 0, days: int = 60) -> pd.DataFrame:
    """Customers a00..a19 buy only cluster A, b00..b19 only cluster B, every order with postage.

    ``probe`` bought A0, A1 and A2; ``loyal`` re-ordered B0 eight times and bought B1 once.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    n = 0
    for group, cluster in (("a", CLUSTER_A), ("b", CLUSTER_B)):
        for c in range(20):
            for _ in range(3):
                n += 1
                items = list(rng.choice(cluster, size=4, replace=False)) + ["POST"]
                rows += rows_for(f"{group}{c:02d}", items, int(rng.integers(0, days)), f"o{n}")
    rows += rows_for("probe", ["A0", "A1", "A2"], 5, "p1")
    for k in range(8):
        rows += rows_for("loyal", ["B0"], 2 + 6 * k, f"l{k}")
    rows += rows_for("loyal", ["B1"], 3, "l9")
    return interactions_table(rows)


def interactions_table(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Rows of :func:`rows_for` as the loader's interactions table (its dtypes), by time."""
    frame = pd.DataFrame(rows, columns=list(INTERACTION_COLUMNS))
    for col in ("customer_id", "item_id", "order_id", "properties", "event_id"):
        frame[col] = frame[col].astype("string")
    frame["event_type"] = frame["event_type"].astype(str)
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns]")
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def write_events_csv(frame: pd.DataFrame, path: Path) -> Path:
    """The table as an ``events`` file (the format the loader reads)."""
    cols = ["customer_id", "event_type", "timestamp", "item_id", "quantity", "price", "order_id"]
    out = frame[cols].copy()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    out.to_csv(path, index=False)
    return path
