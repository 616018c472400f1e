"""INT8 calibration on CPU: tensor ranges computed once, cached under a key, reused by both
Q/DQ forms (TensorRT and CPU) so they come from one calibration.

The cache key is the sha256 of: the FP32 ONNX file's sha256, the preprocessing parameters,
the calibration slice list (hash), the method and its options. A change in any of them gives
a new key and a fresh calibration; a stale range file is never reused.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctedge.cache import cache_root
from ctedge.errors import CalibrationError
from ctedge.preprocess import Preprocessing

from .slices import SliceRef, load_inputs, refs_sha256

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CACHE = cache_root() / "calib"


@dataclass(frozen=True)
class CalibrationConfig:
    """How to calibrate. size: slices (default 512, stratified by class); batch: slices per
    ORT run (memory, not results); percentile: for method=percentile, in percent."""

    method: str = "percentile"  # 99.999th: best INT8 parity of the default model (models/README.md)
    size: int = 512
    batch: int = 16
    percentile: float = 99.999
    cache_dir: Path = DEFAULT_CACHE

    def __post_init__(self):
        object.__setattr__(self, "method", str(self.method).lower())
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        if self.method not in METHODS:
            raise ValueError(f"calibration method must be one of {METHODS}, got {self.method!r}")
        if self.size < 1 or self.batch < 1:
            raise ValueError("calibration size and batch must be >= 1")
        if not 90.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (90, 100], got {self.percentile}")

    @classmethod
    def minmax(cls, **kw) -> CalibrationConfig:
        return cls(method="minmax", **kw)

    @classmethod
    def entropy(cls, **kw) -> CalibrationConfig:
        return cls(method="entropy", **kw)

    @classmethod
    def percentile_(cls, percentile: float = 99.999, **kw) -> CalibrationConfig:
        return cls(method="percentile", percentile=percentile, **kw)

    @property
    def options(self) -> dict:
        """Method options that change the ranges (part of the cache key)."""
        return {"percentile": self.percentile} if self.method == "percentile" else {}


@dataclass(frozen=True)
class Calibration:
    """Cached tensor ranges: `ranges_path` is ONNX Runtime's calibration cache JSON."""

    key: str
    method: str
    ranges_path: Path
    slices: int
    slices_sha256: str
    reused: bool

    def to_dict(self) -> dict:
        return {"key": self.key, "method": self.method, "slices": self.slices,
                "slices_sha256": self.slices_sha256}


def calibration_key(onnx_sha256: str, preprocessing: Preprocessing, slices_sha256: str,
                    method: str, options: dict | None = None) -> str:
    payload = {"onnx_sha256": onnx_sha256, "preprocessing": preprocessing.to_dict(),
               "slices_sha256": slices_sha256, "method": method, "options": options or {}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


class _ArrayReader:
    """An onnxruntime CalibrationDataReader over one float32 batch array."""

    def __init__(self, input_name: str, batch: np.ndarray, step: int):
        self._items = iter([{input_name: batch[i:i + step]} for i in range(0, len(batch), step)])

    def get_next(self):
        return next(self._items, None)


def calibrate(model_path: Path, onnx_sha256: str, refs: list[SliceRef],
              preprocessing: Preprocessing, config: CalibrationConfig,
              input_name: str = "input") -> Calibration:
    """Tensor ranges of `model_path` (the ONNX to be quantised) on `refs`, cached by key.

    onnx_sha256: sha256 of the user's FP32 ONNX file (the key's model part).
    Raises CalibrationError on an empty or unreadable set.
    """
    if not refs:
        raise CalibrationError("calibration set is empty; pass --calib with validation slices")
    slices_sha = refs_sha256(refs)
    key = calibration_key(onnx_sha256, preprocessing, slices_sha, config.method, config.options)
    path = config.cache_dir / f"{key}.json"
    if _valid_cache(path):
        return Calibration(key, config.method, path, len(refs), slices_sha, reused=True)
    ranges = _collect(model_path, refs, preprocessing, config, input_name)
    from onnxruntime.quantization.calibrate import save_tensors_data

    save_tensors_data(ranges, path)  # writes atomically (temp file + rename)
    return Calibration(key, config.method, path, len(refs), slices_sha, reused=False)


def _valid_cache(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        from onnxruntime.quantization.calibrate import load_tensors_data

        return bool(load_tensors_data(path).data)
    except (ValueError, KeyError, TypeError, OSError):
        return False  # a corrupt cache is recomputed, never trusted


def _collect(model_path: Path, refs: list[SliceRef], preprocessing: Preprocessing,
             config: CalibrationConfig, input_name: str):
    from onnxruntime.quantization.calibrate import create_calibrator

    # The same options quantize_static would pass, so the ranges equal its own calibration.
    extra = {"percentile": config.percentile} if config.method == "percentile" else {}
    with tempfile.TemporaryDirectory(prefix="ctedge-calib-") as tmp:
        calibrator = create_calibrator(
            Path(model_path), None,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=ort_method(config.method), extra_options=extra)
        # Feed chunks: histogram methods keep every intermediate tensor of a chunk in memory.
        chunk = max(config.batch, 32)
        for start in range(0, len(refs), chunk):
            inputs = load_inputs(refs[start:start + chunk], preprocessing)
            # One batch per call: ORT's histogram collectors stack a call's batches with
            # np.asarray, which fails when the last batch is shorter.
            for i in range(0, len(inputs), config.batch):
                batch = inputs[i:i + config.batch]
                _quiet(calibrator.collect_data, _ArrayReader(input_name, batch, len(batch)))
        ranges = calibrator.compute_data()
        del calibrator
    if not ranges.data:
        raise CalibrationError(f"{model_path}: calibration produced no tensor ranges; "
                               "check the model has float tensors to quantise")
    return ranges


def _quiet(fn, *args):
    """ORT's histogram collector prints progress lines; keep CLI output to our own."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)
