"""The learned rankers a model version serves, and how each is evaluated.

``native`` (the default, ``serving.ranker_evaluator``): the booster's model text
(``ranker_<task>.txt``) compiled to machine code (:class:`recsys.ranking.forest.NativeForest`,
cached under ``serving.ranker_cache``); ``onnx``: the ONNX form in onnxruntime
(:class:`serving.ranker_onnx.OnnxRanker`). Both give the same scores. A bundle without the
text (trained before it was saved) and a forest that does not compile are served by
onnxruntime, with one warning per load. A ranker that reads another number of columns than
:data:`recsys.ranking.candidates.FEATURES` (a bundle trained before a feature was added) is not
served: its task falls back to the blend, with one warning per load. A task whose manifest entry
(``params["ranker"][task]["served"]``) names a generator is ranked by that generator's column
(:class:`recsys.ranking.generator_ranker.GeneratorRanker`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from recsys.bundle import ModelBundle
from recsys.ranking.candidates import FEATURES
from recsys.ranking.forest import ForestCompileError, NativeForest
from recsys.ranking.generator_ranker import generator_rankers
from recsys.ranking.signals import Ranker
from serving.ranker_onnx import OnnxRanker

log = logging.getLogger("recsys.serving")

Evaluator = Literal["native", "onnx"]
#: how a served task is ranked: a learned ranker's evaluator, or the guard's generator column
ServedBy = Literal["native", "onnx", "generator"]


@dataclass(frozen=True)
class ServedRankers:
    """Each task's ranker and the evaluator that runs it."""

    rankers: dict[str, Ranker] = field(default_factory=dict)
    evaluators: dict[str, ServedBy] = field(default_factory=dict)


def _native(text: str, cache_dir: Path | None) -> NativeForest:
    try:
        return NativeForest.from_model_text(text, cache_dir)
    except OSError as exc:  # the cache folder cannot be written: compile for this process
        log.warning("ranker cache %s unusable (%s): compiling without it", cache_dir, exc)
        return NativeForest.from_model_text(text, None)


def served_rankers(
    bundle: ModelBundle, evaluator: Evaluator, cache_dir: Path | None
) -> ServedRankers:
    """The rankers of ``bundle``: native where asked for and possible, else onnxruntime."""
    rankers: dict[str, Ranker] = {}
    evaluators: dict[str, ServedBy] = {}
    fallbacks: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for task in sorted(set(bundle.ranker_onnx) | set(bundle.ranker_text)):
        ranker, served_by = _ranker(bundle, task, evaluator, cache_dir, fallbacks)
        if ranker.n_features is not None and ranker.n_features != len(FEATURES):
            skipped[task] = f"{task}: reads {ranker.n_features} features, not {len(FEATURES)}"
            fallbacks.pop(task, None)  # not served at all: how it would have run is moot
            continue
        rankers[task], evaluators[task] = ranker, served_by
    if fallbacks:
        log.warning(
            "version %s: rankers %s served by onnxruntime, not native code: %s",
            bundle.version,
            sorted(fallbacks),
            "; ".join(f"{task}: {why}" for task, why in sorted(fallbacks.items())),
        )
    if skipped:
        log.warning(
            "version %s: rankers %s not served (the blend answers): %s",
            bundle.version,
            sorted(skipped),
            "; ".join(why for _, why in sorted(skipped.items())),
        )
    for task, generator in generator_rankers(bundle.manifest.params.get("ranker", {})).items():
        if task not in rankers:  # the guard chose a generator's own order
            rankers[task], evaluators[task] = generator, "generator"
    return ServedRankers(rankers, evaluators)


def _ranker(
    bundle: ModelBundle,
    task: str,
    evaluator: Evaluator,
    cache_dir: Path | None,
    fallbacks: dict[str, str],
) -> tuple[NativeForest | OnnxRanker, Evaluator]:
    """``task``'s ranker: compiled where asked for and possible, else its ONNX form (why not
    native goes to ``fallbacks``). Its ``n_features`` says the columns it reads."""
    text = bundle.ranker_text.get(task)
    if evaluator == "native" and text is not None:
        try:
            return _native(text, cache_dir), "native"
        except ForestCompileError as exc:
            fallbacks[task] = str(exc)
    elif evaluator == "native":
        fallbacks[task] = "the bundle has no model text"
    if task not in bundle.ranker_onnx:
        raise ForestCompileError(f"ranker {task!r}: {fallbacks.get(task)}, and no ONNX form")
    return OnnxRanker(bundle.ranker_onnx[task]), "onnx"
