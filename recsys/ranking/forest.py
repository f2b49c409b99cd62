"""The learned rankers evaluated as native code: a LightGBM model text compiled with LLVM.

:class:`NativeForest` implements :class:`recsys.ranking.signals.Ranker` over machine code that
``lleaves`` generates from the booster's model text (``ranker_<task>.txt`` of the bundle) and
``llvmlite`` compiles: one function walks every tree for every row, with no graph runtime in
between (onnxruntime's tree ensemble costs about three times as much CPU per page view).

The code works in float32, as the ONNX form does: thresholds rounded to float32, each row's
trees summed in order into a float32, so its scores equal onnxruntime's bit for bit on the
rankers (``tests/training/test_ranker_native.py``). The whole forest is one block: lleaves'
cache blocking (34 trees a block) was ~15% faster on the shared model's 137 trees but sums the
trees in another order (scores ~2e-6 off onnxruntime's, enough to swap near ties), and the
"small" code model ~18% faster but can crash on large forests (``benchmarks.ranker_eval``).

Compiling takes seconds; the object code is kept in ``cache_dir`` under the SHA-256 of the
model text, the lleaves and llvmlite versions and the host CPU, written once under a file lock
(the workers of one server start together) and renamed into place, so a restart loads it in
milliseconds and a torn file is never read. Objects unused for :data:`CACHE_DAYS` are removed
when a new one is written. The folder must be writable by the service's user alone: what it
holds is run as code.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

import numpy as np

#: Bumped whenever the generated code changes for the same model text (options, codegen).
CODE_VERSION: Final = 1
ENTRY: Final = "forest_root"
#: A cached object unused for this long is removed when another is written (:func:`prune`).
CACHE_DAYS: Final = 30.0

# CFUNCTYPE releases the GIL for the call: (rows f4*, out f4*, first row, end row)
_ENTRY_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32,
                               ctypes.c_int32)  # fmt: skip
_LLVM_LOCK = threading.Lock()  # LLVM's global state: one compile or load at a time
_INIT_LOCK = threading.Lock()
_llvm_ready = False


class ForestCompileError(RuntimeError):
    """The model text could not be compiled to native code (or its cached object loaded)."""


def _llvm() -> Any:
    """``llvmlite.binding``, its native target initialized (once)."""
    global _llvm_ready
    import llvmlite.binding as llvm

    with _INIT_LOCK:
        if not _llvm_ready:
            try:
                llvm.initialize()  # required before llvmlite 0.45, refused from then on
            except RuntimeError:
                pass
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _llvm_ready = True
    return llvm


def _host() -> str:
    llvm = _llvm()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot always tell
        features = ""
    return f"{llvm.get_host_cpu_name()}|{features}"


def _target_machine(llvm: Any) -> Any:
    """A new target machine for the host (an execution engine owns the one it is given)."""
    cpu, _, features = _host().partition("|")
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=cpu, features=features, reloc="pic",
                                        codemodel="large")  # fmt: skip


def cache_key(model_text: str) -> str:
    """The SHA-256 naming the compiled object of ``model_text`` on this host and toolchain."""
    digest = hashlib.sha256(model_text.encode())
    stamp = f"|lleaves={version('lleaves')}|llvmlite={version('llvmlite')}|{_host()}"
    digest.update(f"{stamp}|f4|code={CODE_VERSION}".encode())
    return digest.hexdigest()


def n_features_of(model_text: str) -> int:
    """The number of feature columns a LightGBM model text reads (``max_feature_idx + 1``)."""
    for line in model_text.splitlines():
        if line.startswith("max_feature_idx="):
            return int(line.partition("=")[2]) + 1
    raise ForestCompileError("not a LightGBM model text: no max_feature_idx")


def _optimize(llvm: Any, module: Any) -> None:
    """LLVM's -O3 pipeline, inlining the trees (the new pass manager from llvmlite 0.44 on,
    the only one from 0.45; the legacy one, as lleaves drives it, before)."""
    if hasattr(llvm, "create_pass_builder"):
        tuning = llvm.PipelineTuningOptions(speed_level=3)
        passes_builder = llvm.create_pass_builder(_target_machine(llvm), tuning)
        passes_builder.getModulePassManager().run(module, passes_builder)
        return
    builder = llvm.PassManagerBuilder()
    builder.opt_level = 3
    builder.inlining_threshold = 1
    passes = llvm.ModulePassManager()
    builder.populate(passes)
    passes.run(module)


def _module(llvm: Any, model_text: str) -> Any:
    """The optimized LLVM module of ``model_text`` (lleaves' code generator, float32)."""
    import llvmlite.ir
    from lleaves.compiler.ast import parse_to_ast
    from lleaves.compiler.codegen import gen_forest

    with tempfile.TemporaryDirectory() as folder:  # lleaves parses a file
        path = Path(folder) / "model.txt"
        path.write_text(model_text)
        forest = parse_to_ast(str(path))
    forest.raw_score = True
    ir = llvmlite.ir.Module(name="forest")
    gen_forest(forest, ir, max(1, len(forest.trees)), ENTRY, False)
    ir.triple = llvm.get_process_triple()
    module = llvm.parse_assembly(str(ir))
    module.verify()
    _optimize(llvm, module)
    return module


def _compile_object(model_text: str) -> bytes:
    """Native object code of ``model_text``."""
    objects: list[bytes] = []
    try:
        llvm = _llvm()
        engine = llvm.create_mcjit_compiler(_module(llvm, model_text), _target_machine(llvm))
        engine.set_object_cache(notify_func=lambda _module, buffer: objects.append(bytes(buffer)))
        engine.finalize_object()
    except Exception as exc:  # lleaves' parser and LLVM raise whatever they meet
        raise ForestCompileError(f"cannot compile the ranker: {exc!r}") from exc
    if not objects:
        raise ForestCompileError("LLVM produced no object code")
    return objects[0]


def _load_object(code: bytes) -> Any:
    """An execution engine running the object ``code`` (no compilation)."""
    llvm = _llvm()
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _target_machine(llvm))
    engine.set_object_cache(getbuffer_func=lambda _module: code)
    engine.finalize_object()
    engine.run_static_constructors()
    return engine


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (a file beside the cached object) across processes."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_object(model_text: str, cache_dir: Path | None) -> tuple[bytes, bool]:
    """The object code of ``model_text`` and whether it was compiled now: read from
    ``cache_dir`` when there, else compiled (under the key's lock) and written there."""
    if cache_dir is None:
        with _LLVM_LOCK:
            return _compile_object(model_text), True
    cache_dir = cache_dir.expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(model_text)
    target = cache_dir / f"{key}.o"
    if target.is_file():
        return _used(target), False
    with _locked(cache_dir / f"{key}.lock"):
        if target.is_file():  # another process compiled it while we waited
            return _used(target), False
        with _LLVM_LOCK:
            code = _compile_object(model_text)
        partial = cache_dir / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        partial.write_bytes(code)
        os.replace(partial, target)
    prune(cache_dir)
    return code, True


def _used(path: Path) -> bytes:
    """The cached object's bytes; its time stamp is renewed (:func:`prune` keeps it)."""
    code = path.read_bytes()
    with suppress(OSError):  # a read-only cache still serves
        os.utime(path)
    return code


def prune(cache_dir: Path, keep_days: float = CACHE_DAYS) -> list[Path]:
    """Remove the objects (and their locks) not used for ``keep_days``: the rankers of versions
    no longer served; each new model adds its own. Returns what it removed."""
    cutoff = time.time() - keep_days * 86400
    removed = []
    for path in cache_dir.glob("*.o"):
        with suppress(OSError):  # gone already, or not ours to remove
            if path.stat().st_mtime < cutoff:
                path.unlink()
                path.with_suffix(".lock").unlink(missing_ok=True)
                removed.append(path)
    return removed


class NativeForest:
    """``predict(features f4 (n, F)) -> f4 (n,)``: the compiled forest's raw scores."""

    def __init__(self, code: bytes, n_features: int, compiled: bool = False) -> None:
        with _LLVM_LOCK:
            try:
                self._engine = _load_object(code)  # owns the code: kept as long as the entry
                address = self._engine.get_function_address(ENTRY)
            except Exception as exc:
                raise ForestCompileError(f"cannot load the ranker's code: {exc!r}") from exc
        if not address:
            raise ForestCompileError(f"the object code has no {ENTRY}")
        self._entry = _ENTRY_TYPE(address)
        self.n_features = n_features
        #: whether this instance's code was compiled when it was made (not read from the cache)
        self.compiled = compiled

    @classmethod
    def from_model_text(cls, model_text: str, cache_dir: Path | None = None) -> NativeForest:
        """Compile ``model_text`` (or load its object from ``cache_dir``)."""
        n_features = n_features_of(model_text)
        code, compiled = cached_object(model_text, cache_dir)
        return cls(code, n_features, compiled)

    def predict(self, features: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(features, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"features must be (n, {self.n_features}), not {rows.shape}")
        n = rows.shape[0]
        if n >= 2**31:
            raise ValueError("at most 2**31 - 1 rows per call")
        scores = np.zeros(n, dtype=np.float32)
        if n:
            self._entry(rows.ctypes.data, scores.ctypes.data, 0, n)
        return scores
