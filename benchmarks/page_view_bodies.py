"""Every customer's page-view bodies, byte for byte: a fingerprint to hold a change of the hot
path to the answers it gave before.

    python -m benchmarks.page_view_bodies --artifacts DIR [--out FILE] [--against FILE]

Builds the app over a trained root on a fresh embedded Redis (nothing persisted: every run
starts from the same bulk load), gives the first :data:`LIVE_CUSTOMERS` customers a fixed set
of events (views, a cart, purchases of items they never bought, a dislike: live records and
folded-in vectors, the same in every run), then asks, with the answer cache off (every view
ranked), each customer's page view for every query of :data:`QUERIES` (the product pages
rotate over the catalogue's valid item ids) and prints the SHA-256 of all the bodies in order.
``--out`` writes the bodies (one line a request: the query, then the body) and ``--against``
compares them with such a file: the number of bodies that differ, and the first few.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `recsys serve` runs: before numpy

import argparse
import gzip
import hashlib
import tempfile
from pathlib import Path
from typing import Any

import uvloop

from benchmarks.page_view_profile import app_started, call
from feature_store.embedded import EmbeddedRedis
from recsys.bundle import latest_version_dir, read_bundle
from recsys.config import Settings
from recsys.schema import is_item_id
from serving.app import create_app

#: Query shapes asked of every customer; ``{item}`` is a catalogue item id, rotating.
QUERIES = (
    "k=10",
    "k=10&exclude_purchased=false",
    "k=20&context=email",
    "k=5&context=cart",
    "k=10&context=product&item_id={item}",
    "k=10&exclude={item}",
)
#: Customers given live events first (views, cart, purchases, a dislike).
LIVE_CUSTOMERS = 300
_TIME = "2011-09-01T10:00:00Z"


def live_events(customer: str, items: list[str], n: int) -> list[dict[str, Any]]:
    """A fixed set of events of ``customer`` (the ``n``-th): views, a cart, purchases, a
    dislike, over items chosen by ``n``."""
    pick = [items[(n * 7 + j * 131) % len(items)] for j in range(6)]
    kinds = ("view", "view", "add_to_cart", "purchase", "purchase", "dislike")
    return [
        {
            "event_id": f"bodies-{customer}-{j}",
            "customer_id": customer,
            "event_type": kind,
            "item_id": item,
            "timestamp": _TIME,
            **({"quantity": 1, "price": 1.0} if kind == "purchase" else {}),
        }
        for j, (kind, item) in enumerate(zip(kinds, pick, strict=True))
    ]


async def bodies(artifacts: Path, redis_url: str) -> list[bytes]:
    bundle = read_bundle(latest_version_dir(artifacts))
    customers = [str(c) for c in bundle.customer_ids]
    items = [str(i) for i in bundle.items.item_ids.tolist() if is_item_id(str(i))]
    app = create_app(Settings(artifacts=artifacts, redis_url=redis_url))
    out: list[bytes] = []
    async with app_started(app):
        app.state.answer_cache.ttl_s = 0  # off: every view ranked
        for n, customer in enumerate(customers[:LIVE_CUSTOMERS]):
            status, body = await call(
                app, "/v1/events", body={"events": live_events(customer, items, n)}
            )
            assert status == 202, (status, body)
        for n, customer in enumerate(customers):
            path = f"/v1/customers/{customer}/recommendations"
            for q, query in enumerate(QUERIES):
                text = query.format(item=items[(n * len(QUERIES) + q) % len(items)])
                status, body = await call(app, path, text)
                assert status == 200, (status, body)
                out.append(f"{customer}?{text} ".encode() + body)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="a trained artifacts root")
    parser.add_argument("--out", type=Path, help="write the bodies here (gzip)")
    parser.add_argument("--against", type=Path, help="compare with a file of --out")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="page-view-bodies-") as tmp,
        EmbeddedRedis(Path(tmp), persist=False) as server,
    ):
        lines = uvloop.run(bodies(args.artifacts, server.url))
    digest = hashlib.sha256(b"\n".join(lines)).hexdigest()
    print(f"{len(lines):,} bodies, sha256 {digest}")
    if args.out:
        args.out.write_bytes(gzip.compress(b"\n".join(lines)))
    if args.against:
        before = gzip.decompress(args.against.read_bytes()).split(b"\n")
        different = [i for i, (a, b) in enumerate(zip(before, lines, strict=False)) if a != b]
        different += list(range(min(len(before), len(lines)), max(len(before), len(lines))))
        print(f"against {args.against}: {len(different):,} of {len(lines):,} bodies differ")
        for i in different[:3]:
            print(f"  before: {before[i][:300]!r}\n  now:    {lines[i][:300]!r}")


if __name__ == "__main__":
    main()
