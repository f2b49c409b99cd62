"""``recsys demo``: the whole service on one machine with nothing else installed."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pelanggan.ports import require_free_port
from pelanggan.store import redis_for
from recsys.bundle import latest_version_dir, read_bundle
from recsys.config import Settings
from recsys.errors import ModelUnavailableError

log = logging.getLogger("recsys.demo")


def _prepare(args: argparse.Namespace, settings: Settings) -> Path:
    """Generate the synthetic events and train once; later runs reuse them."""
    from recsys.io.synthetic import generate_events, write_events
    from training.pipeline import train_bundle

    workdir: Path = args.dir
    workdir.mkdir(parents=True, exist_ok=True)
    events_path = workdir / "events.csv.gz"
    catalog_path = workdir / "catalog.csv"
    artifacts = workdir / "artifacts"
    if not events_path.is_file():
        print(f"generating {args.customers} customers x {args.items} items x {args.days} days ...")
        events, catalog = generate_events(args.customers, args.items, args.days, seed=7)
        write_events(events, events_path)
        catalog.to_csv(catalog_path, index=False)
    try:
        return latest_version_dir(artifacts)
    except ModelUnavailableError:
        print("training ...")
        return train_bundle(
            events_path, artifacts, catalog_path=catalog_path, config=settings.training
        )


def _print_what_to_try(version_dir: Path, base: str, port: int) -> None:
    bundle = read_bundle(version_dir)
    loadtest = "make loadtest" if port == 8000 else f"make loadtest PORT={port}"
    customer = str(bundle.customer_ids[0]) if len(bundle.customer_ids) else "C00001"
    item = str(bundle.items.item_ids[int(bundle.popular[0])]) if len(bundle.popular) else "I0001"
    print(
        f"""
Pelanggan demo, model {bundle.version}: {len(bundle.customer_ids):,} customers, \
{len(bundle.items):,} items.
Try:
  curl '{base}/v1/customers/{customer}/recommendations?k=5'
  curl '{base}/v1/customers/{customer}/recommendations?k=5&context=product&item_id={item}'
  curl '{base}/v1/customers/{customer}'
  curl '{base}/v1/customers/{customer}/offers'
  curl '{base}/v1/customers/{customer}/next-best-action'
  curl '{base}/v1/items/{item}/similar?k=5'
  curl '{base}/v1/popular?k=5'
  curl -X POST '{base}/v1/events' -H 'content-type: application/json' \\
       -d '{{"customer_id": "{customer}", "event_type": "purchase", "item_id": "{item}", \
"quantity": 1, "price": 2.5}}'
  open {base}/docs
Load test: {loadtest}   (Ctrl-C stops the server)
"""
    )


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    port = args.port or settings.port
    if not args.no_serve:
        require_free_port("127.0.0.1", port)  # before generating, training or printing a URL
    version_dir = _prepare(args, settings)
    artifacts = version_dir.parent
    settings = settings.model_copy(
        update={"artifacts": artifacts, "port": port, "host": "127.0.0.1"}
    )
    with redis_for(settings, artifacts / "redis") as ready:
        from feature_store.bulk_load import ensure_loaded
        from feature_store.redis_store import RedisFeatureStore

        store = RedisFeatureStore.from_settings(ready)
        bundle = read_bundle(version_dir)
        if ensure_loaded(store, bundle):
            print(f"loaded features of {bundle.version} into Redis")
        base = f"http://{ready.host}:{ready.port}"
        _print_what_to_try(version_dir, base, ready.port)
        if args.no_serve:
            return 0
        from serving.server import run

        run(ready)
    return 0
