"""A second domain for the offline evaluation: MovieLens 100k as an events file.

``python -m benchmarks.movielens --out ml100k_events.csv.gz`` writes every rating as a
``purchase`` (price 1, quantity 1, the rating's own order id) of customer ``user_id``, item
``m<item_id>``, at the rating's time; then::

    recsys evaluate --events ml100k_events.csv.gz --split-date 1998-03-01 --out eval-ml100k

No data set is downloaded at run time: the ratings come from the recbole 1.2.1 wheel, which
ships ``ml-100k.inter`` (``pip download recbole==1.2.1 --no-deps -d DIR`` fetches it from PyPI;
``--wheel`` names it). Nothing of it is installed or committed.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

WHEEL = "recbole==1.2.1"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"


def fetch_wheel(directory: Path) -> Path:
    """The recbole wheel, downloaded by pip into ``directory`` (no dependencies)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-q", "-d", str(directory)],
        check=True,
    )
    return next(directory.glob("recbole-*.whl"))


def ratings_as_events(inter: bytes) -> pd.DataFrame:
    """The ``.inter`` table (user, item, rating, unix time; tab-separated) as purchase events,
    sorted by time."""
    table = pd.read_csv(io.BytesIO(inter), sep="\t")
    table.columns = [name.split(":")[0] for name in table.columns]
    events = pd.DataFrame(
        {
            "customer_id": table["user_id"].astype(str),
            "event_type": "purchase",
            "timestamp": pd.to_datetime(table["timestamp"], unit="s"),
            "item_id": "m" + table["item_id"].astype(str),
            "quantity": 1,
            "price": 1.0,
            "order_id": "r" + pd.RangeIndex(len(table)).astype(str),
        }
    )
    return events.sort_values("timestamp", kind="stable").reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="events file (.csv or .csv.gz)")
    parser.add_argument("--wheel", type=Path, help="a recbole 1.2.1 wheel (else pip downloads it)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        wheel = args.wheel or fetch_wheel(Path(scratch))
        with zipfile.ZipFile(wheel) as archive:
            events = ratings_as_events(archive.read(MEMBER))
    events.to_csv(args.out, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    print(
        f"{len(events):,} ratings of {events['customer_id'].nunique():,} customers and "
        f"{events['item_id'].nunique():,} items, {events['timestamp'].min():%Y-%m-%d} to "
        f"{events['timestamp'].max():%Y-%m-%d}: {args.out}"
    )


if __name__ == "__main__":
    main()
