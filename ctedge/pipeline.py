"""Study in, decision out: index headers, decode and preprocess in worker processes, run
batched inference in the main process, then apply the study rule.

Memory stays flat for any study length: at most batch_size + workers slices are held at once.
A worker that dies on a slice costs that slice (reported as a problem), not the study.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifact import default_model_path, file_sha256
from .backends import BACKENDS, Backend, open_backend
from .decision import RULES, decide
from .dicom import read_study
from .errors import DicomError
from .lungs import LungFieldConfig
from .result import SliceResult, StudyResult
from .slices import PreparedSlice, prepare_slice
from .workers import DECODE_MODULES, SliceWorkers, WorkerDied

# A slice still decoding after this long is stopped and reported: a decoder stuck on a
# malformed file must not hold the study. A 512x512 CT slice takes ~10 ms; the limit is wall
# time, so it is set far above what the most overloaded shared box has shown (a 8-slice test
# study taking minutes at load average 25 on 2 cores).
SLICE_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class ClassifyConfig:
    """How to classify one study.

    model: an .onnx or engine path; None takes the repo's default model.
    workers: decode processes; 0 means one per CPU core.
    """

    model: Path | None = None
    backend: str = "auto"
    batch_size: int = 16
    rule: str = "robust"
    series_uid: str | None = None
    workers: int = 0
    progress: bool = False
    maps: bool = False  # also fetch class-activation maps (models that have them; report)

    def __post_init__(self):
        if self.model is not None:
            object.__setattr__(self, "model", Path(self.model))
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        if not 1 <= self.batch_size <= 1024:
            raise ValueError(f"batch_size must be 1..1024, got {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")

    @property
    def worker_count(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)


def classify_study(study_dir: str | Path, config: ClassifyConfig = ClassifyConfig(),
                   backend: Backend | None = None) -> StudyResult:
    """Classify the chosen CT series of `study_dir` with `backend` (opened from config if None)."""
    start = time.perf_counter()
    study = read_study(study_dir, config.series_uid)
    timings = {"read": time.perf_counter() - start}
    model_path = config.model or default_model_path()

    owned = backend is None
    t = time.perf_counter()
    # Workers start before the backend opens, so they fork a small process (no model in its
    # memory) in milliseconds and import their decoders while the model loads (ctedge.workers).
    with SliceWorkers(config.worker_count, prepare_slice, preload=DECODE_MODULES,
                      timeout_s=SLICE_TIMEOUT_S) as workers:
        timings["workers"] = time.perf_counter() - t
        load_start = time.perf_counter()
        if owned:
            backend = open_backend(model_path, config.backend)
        timings["load"] = time.perf_counter() - load_start
        described = backend.description
        maps = {} if config.maps and backend.has_maps else None
        rerun_before = getattr(backend, "rerun", None)  # an engine's near-tie FP32 fallback
        try:
            prepared, probs = _run(workers, study.series.slices, backend, config, timings,
                                   maps)
        finally:
            if owned:
                backend.close()
        if rerun_before is not None:
            described["fallback"] = {**described["fallback"],
                                     "slices_rerun": backend.rerun - rerun_before}

    failed = [p for p in prepared if p.problem]
    if failed and len(failed) == len(prepared):
        raise DicomError(f"no slice of {study.root_display} could be decoded; first problem: "
                         f"{failed[0].problem}")

    decide_start = time.perf_counter()
    used = [p.index for p in prepared if p.used]
    info = backend.info
    used_probs = np.array([probs[i] for i in used], dtype=np.float32).reshape(-1, len(info.classes))
    decision = decide(used_probs, used, list(info.classes), info.negative_class, config.rule,
                      info.thresholds)
    timings["decide"] = time.perf_counter() - decide_start
    timings["decode"] = sum(p.decode_s for p in prepared)
    timings["preprocess"] = sum(p.preprocess_s for p in prepared)
    timings["total"] = time.perf_counter() - start

    refs = study.series.slices
    slices = [SliceResult.from_prepared(p, refs[p.index], probs.get(p.index), info.classes)
              for p in prepared]
    model = {
        "path": str(model_path),
        "sha256": file_sha256(backend.path),
        "classes": list(info.classes),
        "negative_class": info.negative_class,
        **described,
        "thresholds": info.thresholds.to_dict(),  # for the report's plots
        "preprocessing": info.preprocessing.to_dict(),  # the report's lung window
        "maps": maps is not None,
    }
    return StudyResult(study=study, decision=decision, slices=slices, timings_s=timings,
                       model=model, maps=maps)


def _run(workers: SliceWorkers, refs, backend, config, timings, maps=None):
    """Decode slices on `workers` and infer batches of the used ones as they fill.

    Decoding and inference take turns: while a batch fills, every worker decodes; while it
    runs, the inference threads have the cores (only the slices already handed out finish
    meanwhile). On a machine where both want every core this beats overlapping them, which
    makes ONNX Runtime's threads wait on descheduled peers. At most batch_size + workers
    slices are held at once, whatever the study's length. Returns (prepared slices in z
    order, {slice index: probabilities}); fills `maps` ({slice index: (C, h, w)
    class-activation maps}) when it is a dict.
    """
    preprocessing, lungs = backend.info.preprocessing, LungFieldConfig()
    submitted = 0
    prepared: dict[int, PreparedSlice] = {}
    probs: dict[int, np.ndarray] = {}
    batch: list[PreparedSlice] = []
    timings["infer"] = timings["wait"] = 0.0  # wall s in inference / waiting for decoders
    progress = _Progress(len(refs)) if config.progress else None

    def flush(items):
        t = time.perf_counter()
        if maps is None:
            out = backend.infer(np.stack([p.tensor for p in items]))
        else:
            out, cams = backend.infer_maps(np.stack([p.tensor for p in items]))
            maps.update((p.index, cam) for p, cam in zip(items, cams, strict=True))
        timings["infer"] += time.perf_counter() - t
        for p, row in zip(items, out, strict=True):
            probs[p.index] = row
            p.tensor = None  # free the input as soon as it is classified

    while submitted < len(refs) or workers.busy:
        while submitted < len(refs) and workers.idle and len(batch) < config.batch_size:
            workers.submit(submitted, refs[submitted], preprocessing, lungs)
            submitted += 1
        t = time.perf_counter()
        finished = workers.collect()
        timings["wait"] += time.perf_counter() - t
        for item in finished:
            if isinstance(item, WorkerDied):
                item = PreparedSlice(item.index, False, None, None,
                                     f"{refs[item.index].name}: {item.why}; the slice was "
                                     "skipped, check the file", 0.0, 0.0)
            prepared[item.index] = item
            if item.used:
                batch.append(item)
        if len(batch) >= config.batch_size:
            flush(batch[:config.batch_size])
            del batch[:config.batch_size]
        if progress:
            progress.update(len(prepared))
    if batch:
        flush(batch)
    if progress:
        progress.close()
    return [prepared[i] for i in sorted(prepared)], probs


class _Progress:
    """A one-line slice counter on stderr, only when stderr is a terminal."""

    def __init__(self, total: int):
        self.total, self.enabled = total, sys.stderr.isatty()

    def update(self, done: int) -> None:
        if self.enabled:
            sys.stderr.write(f"\rclassifying: {done}/{self.total} slices")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
