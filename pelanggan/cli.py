"""``recsys``: the command line of api.md (demo, train, serve, evaluate, generate, ...)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pelanggan.store import redis_for
from recsys.config import Settings, get_settings
from recsys.errors import InvalidRequestError, RecsysError

log = logging.getLogger("recsys")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="synthetic data, training, embedded Redis, serving")
    demo.add_argument("--dir", type=Path, default=Path(".demo"), help="working directory")
    demo.add_argument("--port", type=int, default=None)
    demo.add_argument("--customers", type=int, default=2000)
    demo.add_argument("--items", type=int, default=500)
    demo.add_argument("--days", type=int, default=365)
    demo.add_argument("--no-serve", action="store_true", help="prepare everything, do not serve")

    train = sub.add_parser("train", help="build a model bundle from an events file")
    train.add_argument("--events", type=Path, required=True)
    train.add_argument("--format", default="auto", choices=["auto", "events", "online-retail"])
    train.add_argument("--catalog", type=Path, default=None)
    train.add_argument("--as-of", default=None, help="train on data strictly before this date")
    train.add_argument("--out", type=Path, default=None, help="artifact root (RECSYS_ARTIFACTS)")

    serve = sub.add_parser("serve", help="serve the latest model version")
    serve.add_argument("--artifacts", type=Path, default=None)
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=None)

    evaluate = sub.add_parser("evaluate", help="time-based offline evaluation")
    evaluate.add_argument("--events", type=Path, required=True)
    evaluate.add_argument("--split-date", required=True)
    evaluate.add_argument("--format", default="auto", choices=["auto", "events", "online-retail"])
    evaluate.add_argument("--out", type=Path, default=Path("evaluation"))

    generate = sub.add_parser("generate", help="write the synthetic data set")
    generate.add_argument("--customers", type=int, required=True)
    generate.add_argument("--items", type=int, required=True)
    generate.add_argument("--days", type=int, required=True)
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--out", type=Path, required=True)

    export = sub.add_parser("export-events", help="write the durable event stream as a file")
    export.add_argument("--out", type=Path, required=True)
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def erased_customers(settings: Settings, artifacts: Path) -> frozenset[str]:
    """Customers erased from the online store: training must never bring them back.

    The configured Redis, or the embedded one whose data lives beside the artifacts (when a
    server has run there); with neither, nobody can have been erased.
    """
    from feature_store.export import erased_customer_ids

    if not settings.redis_url and not (artifacts / "redis").is_dir():
        return frozenset()
    with redis_for(settings, artifacts / "redis") as ready:
        return erased_customer_ids(ready)


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from training.pipeline import train_bundle

    out = args.out or settings.artifacts
    exclude = erased_customers(settings, out)
    if exclude:
        print(f"leaving out {len(exclude):,} erased customers")
    path = train_bundle(
        args.events,
        out,
        fmt=args.format,
        catalog_path=args.catalog,
        as_of=args.as_of,
        config=settings.training,
        exclude_customers=exclude,
    )
    print(f"wrote model version {path.name} to {path}")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from serving.server import run

    updates = {
        name: value
        for name, value in {
            "artifacts": args.artifacts,
            "host": args.host,
            "port": args.port,
            "workers": args.workers,
        }.items()
        if value is not None
    }
    settings = settings.model_copy(update=updates)
    if not settings.api_keys and not _is_loopback(settings.host):
        raise RecsysError(
            f"refusing to serve on {settings.host!r} without API keys: set RECSYS_API_KEYS "
            "or bind a loopback address"
        )
    os.environ["RECSYS_ARTIFACTS"] = str(settings.artifacts)
    with redis_for(settings, settings.artifacts / "redis") as ready:
        run(ready)
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from training.evaluate import evaluate

    report = evaluate(
        args.events, args.split_date, out_dir=args.out, fmt=args.format, config=settings.training
    )
    print(json.dumps(report.get("summary", report), indent=2, default=str))
    print(f"report written to {args.out}")
    return 0


EVENT_FILE_SUFFIXES = (".csv.gz", ".csv", ".parquet")


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.io.synthetic import write_synthetic

    name = args.out.name
    suffix = next((s for s in EVENT_FILE_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        raise InvalidRequestError(f"--out {name!r}: use one of {', '.join(EVENT_FILE_SUFFIXES)}")
    for option in ("customers", "items", "days"):
        if getattr(args, option) < 1:
            raise InvalidRequestError(f"--{option} must be at least 1")
    count, catalog = write_synthetic(
        args.out, args.customers, args.items, args.days, seed=args.seed
    )
    catalog_path = args.out.with_name(name[: -len(suffix)] + "_catalog.csv")
    catalog.to_csv(catalog_path, index=False)
    print(f"wrote {count:,} events to {args.out} and the catalogue to {catalog_path}")
    return 0


def cmd_export_events(args: argparse.Namespace, settings: Settings) -> int:
    from feature_store.export import export_events

    with redis_for(settings, settings.artifacts / "redis") as ready:
        count = export_events(ready, args.out)
    print(f"wrote {count:,} events to {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from pelanggan.demo import run_demo

    return run_demo(args, settings)


COMMANDS = {
    "demo": cmd_demo,
    "train": cmd_train,
    "serve": cmd_serve,
    "evaluate": cmd_evaluate,
    "generate": cmd_generate,
    "export-events": cmd_export_events,
}


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args, get_settings())
    except RecsysError as exc:
        print(f"recsys {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
