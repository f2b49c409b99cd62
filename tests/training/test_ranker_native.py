"""The rankers compiled to native code (``recsys.ranking.forest``): the scores of the ONNX form
bit for bit, a disk cache keyed by the model text, safe when processes fill it together."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from recsys.ranking.candidates import FEATURES
from recsys.ranking.forest import CACHE_DAYS, ForestCompileError, NativeForest, cache_key
from training.ranker_onnx import SessionRanker, booster_to_onnx


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Continuous features and a few with repeated values (splits fall on the data's values,
    as they do on the candidates' counts, days and flags), one column constant."""
    x = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    x[:, 1] = np.round(x[:, 1] * 3)
    x[:, 2] = rng.integers(0, 2, n)
    x[:, 4] = np.float32(-1.0)
    return x


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    rng = np.random.default_rng(3)
    x = _rows(rng, 4000)
    y = x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + rng.normal(scale=0.5, size=len(x)) > 0.8
    model = lgb.LGBMRanker(n_estimators=60, num_leaves=15, min_child_samples=10, verbose=-1,
                           n_jobs=1, random_state=0)  # fmt: skip
    model.fit(x, y.astype(np.float32), group=[100] * 40)
    return model.booster_


@pytest.fixture(scope="module")
def probe() -> np.ndarray:
    rng = np.random.default_rng(4)
    return np.concatenate([_rows(rng, 300), _rows(np.random.default_rng(3), 4000)[:500]])


def test_native_scores_are_onnxruntimes_bit_for_bit(
    booster: lgb.Booster, probe: np.ndarray, tmp_path: Path
) -> None:
    native = NativeForest.from_model_text(booster.model_to_string(), tmp_path)
    onnx = SessionRanker(booster_to_onnx(booster, len(FEATURES)))
    got, expected = native.predict(probe), onnx.predict(probe)
    assert got.dtype == np.float32 and got.shape == (len(probe),)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(got, booster.predict(probe), atol=1e-5)
    assert np.std(got) > 0.1  # a forest that learned something, not a constant
    np.testing.assert_array_equal(native.predict(probe[:1]), expected[:1])
    assert native.predict(probe[:0]).shape == (0,)
    np.testing.assert_array_equal(native.predict(probe.astype(np.float64)), expected)
    np.testing.assert_array_equal(native.predict(np.asfortranarray(probe)), expected)


def test_a_second_load_reads_the_cache_instead_of_compiling(
    booster: lgb.Booster, probe: np.ndarray, tmp_path: Path
) -> None:
    text = booster.model_to_string()
    first = NativeForest.from_model_text(text, tmp_path)
    second = NativeForest.from_model_text(text, tmp_path)
    assert first.compiled and not second.compiled
    assert [p.name for p in tmp_path.glob("*.o")] == [f"{cache_key(text)}.o"]
    np.testing.assert_array_equal(second.predict(probe), first.predict(probe))
    fewer = booster.model_to_string(num_iteration=20)  # another model text, another object
    assert cache_key(fewer) != cache_key(text)
    assert NativeForest.from_model_text(fewer, tmp_path).compiled
    assert len(list(tmp_path.glob("*.o"))) == 2


def _load(text: str, folder: str, probe: np.ndarray) -> tuple[bool, bytes]:
    forest = NativeForest.from_model_text(text, Path(folder))
    return forest.compiled, forest.predict(probe).tobytes()


def test_processes_filling_the_cache_together_compile_once(
    booster: lgb.Booster, probe: np.ndarray, tmp_path: Path
) -> None:
    text = booster.model_to_string()
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.starmap(_load, [(text, str(tmp_path), probe)] * 3)
    assert sum(compiled for compiled, _ in results) == 1
    assert len({scores for _, scores in results}) == 1
    assert len(list(tmp_path.glob("*.o"))) == 1 and not list(tmp_path.glob(".*.tmp"))


def test_without_a_cache_folder_it_compiles_in_memory(
    booster: lgb.Booster, probe: np.ndarray
) -> None:
    forest = NativeForest.from_model_text(booster.model_to_string(), None)
    assert forest.compiled
    np.testing.assert_allclose(forest.predict(probe), booster.predict(probe), atol=1e-5)


def test_bad_input_is_refused(booster: lgb.Booster, tmp_path: Path) -> None:
    forest = NativeForest.from_model_text(booster.model_to_string(), tmp_path)
    with pytest.raises(ValueError, match="features must be"):
        forest.predict(np.zeros((3, len(FEATURES) - 1), np.float32))
    with pytest.raises(ValueError, match="features must be"):
        forest.predict(np.zeros(len(FEATURES), np.float32))
    with pytest.raises(ForestCompileError):
        NativeForest.from_model_text("not a model", tmp_path)
    with pytest.raises(ForestCompileError):
        NativeForest.from_model_text("tree\nmax_feature_idx=3\nversion=v4\n", tmp_path)


def test_objects_unused_for_a_month_are_removed_when_another_is_written(
    booster: lgb.Booster, tmp_path: Path
) -> None:
    old, used, new = (booster.model_to_string(num_iteration=n) for n in (5, 10, 15))
    for text in (old, used):
        NativeForest.from_model_text(text, tmp_path)
    long_ago = time.time() - (CACHE_DAYS + 1) * 86400
    for text in (old, used):
        os.utime(tmp_path / f"{cache_key(text)}.o", (long_ago, long_ago))
    assert not NativeForest.from_model_text(used, tmp_path).compiled  # a load renews it
    assert NativeForest.from_model_text(new, tmp_path).compiled
    left = {p.name for p in tmp_path.iterdir()}
    assert f"{cache_key(old)}.o" not in left and f"{cache_key(old)}.lock" not in left
    assert {f"{cache_key(used)}.o", f"{cache_key(new)}.o"} <= left
