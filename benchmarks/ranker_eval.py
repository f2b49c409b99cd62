"""The learned rankers alone: onnxruntime against the native forest on real candidate rows.

    python -m benchmarks.ranker_eval --artifacts DIR [--customers 300] [--repeats 5]

Loads the newest bundle under ``DIR`` (it needs ``ranker_<task>.txt``: trained by this
version), builds each sampled customer's candidate feature matrix as the page view does
(:func:`recsys.ranking.candidates.candidates_for`, no context), and prints per task the CPU
microseconds of one ``predict`` on a page view's matrix (one customer's rows) and per customer
on the offers batch's block (all sampled customers' rows in one call), for both evaluators,
interleaved and the best of ``--repeats`` rounds; then the largest score difference between
the two (0: bit for bit). Also the seconds a first compile takes and a cached load.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from recsys.bundle import latest_version_dir, read_bundle
from recsys.ranking.candidates import candidates_for
from recsys.ranking.forest import NativeForest
from recsys.ranking.scoring import RankingModel
from recsys.ranking.signals import Ranker
from serving.ranker_onnx import OnnxRanker
from training.ranker import customer_arguments


def cpu_us(ranker: Ranker, matrices: list[np.ndarray]) -> float:
    """CPU microseconds per ``predict`` over ``matrices``."""
    started = time.process_time()
    for matrix in matrices:
        ranker.predict(matrix)
    return (time.process_time() - started) / len(matrices) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="a trained artifacts root")
    parser.add_argument("--customers", type=int, default=300, help="customers sampled")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (best kept)")
    args = parser.parse_args()
    bundle = read_bundle(latest_version_dir(args.artifacts))
    if not bundle.ranker_text:
        raise SystemExit("the bundle has no ranker_<task>.txt: train it with this version")
    model = RankingModel.from_bundle(bundle)
    assert model.signals is not None
    known = np.flatnonzero(np.diff(bundle.history.indptr) > 0)
    users = known[:: max(1, len(known) // args.customers)][: args.customers]
    pages = [
        candidates_for(model, model.signals, customer_arguments(bundle, u), 10, None).features
        for u in users.tolist()
    ]
    block = np.concatenate(pages)
    print(f"{bundle.version}: {len(pages)} customers, {block.shape[0] / len(pages):.0f} rows each")
    for task in sorted(bundle.ranker_text):
        text = bundle.ranker_text[task]
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            NativeForest.from_model_text(text, Path(folder))
            compile_s = time.perf_counter() - started
            started = time.perf_counter()
            native = NativeForest.from_model_text(text, Path(folder))
            load_s = time.perf_counter() - started
        onnx = OnnxRanker(bundle.ranker_onnx[task])
        best: dict[str, list[float]] = {"onnx": [np.inf, np.inf], "native": [np.inf, np.inf]}
        rankers: tuple[tuple[str, Ranker], ...] = (("onnx", onnx), ("native", native))
        for _ in range(args.repeats):
            for name, ranker in rankers:
                page = cpu_us(ranker, pages * 3)
                whole = cpu_us(ranker, [block] * 3) / len(pages)
                best[name] = [min(best[name][0], page), min(best[name][1], whole)]
        trees = text.count("\nTree=")
        diff = float(np.abs(native.predict(block) - onnx.predict(block)).max())
        print(f"ranker {task} ({trees} trees): compile {compile_s:.2f} s, cached load "
              f"{load_s * 1e3:.1f} ms; max |native - onnx| = {diff:.1e}")  # fmt: skip
        for name, (page, whole) in best.items():
            print(f"  {name:<7} page view call {page:7.1f} us CPU; "
                  f"offers block {whole:7.1f} us CPU a customer")  # fmt: skip


if __name__ == "__main__":
    main()
