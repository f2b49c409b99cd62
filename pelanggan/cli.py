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
from typing import TYPE_CHECKING

from pelanggan.ports import require_free_port
from pelanggan.store import redis_for
from recsys.config import Settings, get_settings
from recsys.errors import InvalidRequestError, RecsysError

if TYPE_CHECKING:
    from feature_store.tombstones import ErasedSet

log = logging.getLogger("recsys")


FORMATS = ["auto", "events", "online-retail"]
FORMAT_HELP = "auto (guess from the columns), events, or online-retail (UCI); default %(default)s"


def version() -> str:
    """The installed distribution's version (``pyproject.toml``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("pelanggan")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys",
        description=__doc__,
        epilog="Settings come from RECSYS_* environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # Every command that uses the store takes the store's URL (RECSYS_REDIS_URL): a tool can use
    # the store a running service uses, embedded or not.
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--redis-url",
        default=None,
        help="the Redis to use (RECSYS_REDIS_URL; unset: the embedded one beside the artifacts)",
    )

    demo = sub.add_parser(
        "demo", parents=[store], help="synthetic data, training, embedded Redis, serving"
    )
    demo.add_argument(
        "--dir", type=Path, default=Path(".demo"), help="working directory (%(default)s)"
    )
    demo.add_argument(
        "--port", type=int, default=None, help="port on 127.0.0.1 (RECSYS_PORT, else 8000)"
    )
    demo.add_argument(
        "--customers", type=int, default=2000, help="synthetic customers (%(default)s)"
    )
    demo.add_argument("--items", type=int, default=500, help="synthetic items (%(default)s)")
    demo.add_argument("--days", type=int, default=365, help="days of history (%(default)s)")
    demo.add_argument("--no-serve", action="store_true", help="prepare everything, do not serve")

    train = sub.add_parser(
        "train", parents=[store], help="build a model bundle from an events file"
    )
    train.add_argument(
        "--events", type=Path, required=True, help="events file: .csv, .csv.gz or .parquet"
    )
    train.add_argument("--format", default="auto", choices=FORMATS, help=FORMAT_HELP)
    train.add_argument(
        "--catalog", type=Path, default=None, help="catalogue file (default: derived from events)"
    )
    train.add_argument(
        "--as-of", default=None, help="train on data strictly before this date (default: all)"
    )
    train.add_argument("--out", type=Path, default=None, help="artifact root (RECSYS_ARTIFACTS)")

    serve = sub.add_parser("serve", parents=[store], help="serve the latest model version")
    serve.add_argument(
        "--artifacts", type=Path, default=None, help="artifact root (RECSYS_ARTIFACTS)"
    )
    serve.add_argument("--host", default=None, help="address to bind (RECSYS_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (RECSYS_PORT, 8000)")
    serve.add_argument(
        "--workers", type=int, default=None, help="worker processes (RECSYS_WORKERS, 1)"
    )

    evaluate = sub.add_parser("evaluate", help="time-based offline evaluation")
    evaluate.add_argument(
        "--events", type=Path, required=True, help="events file: .csv, .csv.gz or .parquet"
    )
    evaluate.add_argument(
        "--split-date", required=True, help="train before this date, test from it (YYYY-MM-DD)"
    )
    evaluate.add_argument("--format", default="auto", choices=FORMATS, help=FORMAT_HELP)
    evaluate.add_argument(
        "--out", type=Path, default=Path("evaluation"), help="report directory (%(default)s)"
    )

    generate = sub.add_parser("generate", help="write the synthetic data set")
    generate.add_argument("--customers", type=int, required=True, help="number of customers")
    generate.add_argument("--items", type=int, required=True, help="number of items")
    generate.add_argument("--days", type=int, required=True, help="days of history")
    generate.add_argument(
        "--seed", type=int, default=7, help="random seed: same seed, same data (%(default)s)"
    )
    generate.add_argument(
        "--out",
        type=Path,
        required=True,
        help="events file (.csv, .csv.gz or .parquet); the catalogue goes beside it",
    )

    export = sub.add_parser(
        "export-events", parents=[store], help="write the durable event stream as a file"
    )
    export.add_argument(
        "--out", type=Path, required=True, help="events file (.csv, .csv.gz or .parquet)"
    )
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def erased_customers(settings: Settings, artifacts: Path) -> ErasedSet | frozenset[str]:
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


def _require_model(artifacts: Path) -> None:
    """A folder without a model version (a typo'd ``--artifacts``) is an error, not a service
    answering an empty model: the exit code is 2 and the message names the folder."""
    from recsys.bundle import latest_version_dir

    try:
        latest_version_dir(artifacts)
    except RecsysError as exc:
        raise InvalidRequestError(
            f"{exc}: nothing to serve; train one first (recsys train --out DIR) or point "
            "--artifacts at the folder that holds one"
        ) from None


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
    require_free_port(settings.host, settings.port)
    _require_model(settings.artifacts)
    os.environ["RECSYS_ARTIFACTS"] = str(settings.artifacts)
    with redis_for(settings, settings.artifacts / "redis") as ready:
        run(ready)
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from training.evaluate import evaluate

    report = evaluate(
        args.events, args.split_date, out_dir=args.out, fmt=args.format, config=settings.training
    )
    k = report.get("summary_k")
    print(
        f"summary at k={k} (ndcg@{k} and recall@{k} per task and method; served_lift_*: "
        "the served ranking's figure over the method's, minus 1):"
    )
    print(json.dumps(report.get("summary", report), indent=2, default=str))
    print(
        f"verdicts (ranking: served minus each method at k={k}; churn: the model minus each "
        "baseline), 95% paired bootstrap intervals:"
    )
    for line in report.get("verdicts", []):  # "beats" only where the 95% interval excludes 0
        print(line)
    for task, chosen in report.get("ranker", {}).items():
        if isinstance(chosen, dict) and "served" in chosen:  # training's validation window
            figures = chosen.get("validation_ndcg@20", {})
            generators = chosen.get("generators_ndcg@20", {})
            print(
                f"served for {task}: {chosen['served']} (validation ndcg@20 {figures}, "
                f"generators {generators})"
            )
    print(f"report written to {args.out} (open {args.out / 'report.html'})")
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
        settings = get_settings()
        if getattr(args, "redis_url", None):
            os.environ["RECSYS_REDIS_URL"] = args.redis_url  # for worker processes too
            settings = settings.model_copy(update={"redis_url": args.redis_url})
        return COMMANDS[args.command](args, settings)
    except RecsysError as exc:
        cause = f" ({type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
        print(f"recsys {args.command}: error: {exc}{cause}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
