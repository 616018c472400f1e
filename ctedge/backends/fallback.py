"""Near-tie fallback: slices a reduced-precision engine cannot call are re-run in FP32.

An INT8 engine moves each probability by a few hundredths (the build's parity table gives the
largest move it saw). On a slice whose two top classes are closer than that, the engine's
class is a coin toss against the FP32 model's: no calibration fixes a slice at p 0.498. An
engine built with a fallback keeps the FP32 model it was built from in its folder; every
slice whose top-two gap on the engine is below `margin` is re-run on it, so those slices get
the FP32 answer. On the validation and test slices measured this is a few per cent of the
slices (docs/engines.md); confident slices, which decide studies, never pay for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelError
from .base import Backend


def near_ties(probs: np.ndarray, margin: float) -> np.ndarray:
    """Rows of `probs` (N, C) whose two largest probabilities differ by less than `margin`."""
    if probs.shape[1] < 2:
        return np.zeros(len(probs), dtype=bool)
    top = np.partition(probs, -2, axis=1)[:, -2:]
    return np.abs(top[:, 1] - top[:, 0]) < margin


class FallbackBackend(Backend):
    """`primary` (the engine) with its near-tie slices re-run on the FP32 `reference` file,
    which is opened on first need by `open_reference(path)` after its sha256 is checked."""

    def __init__(self, primary: Backend, reference: Path, margin: float, sha256: str,
                 open_reference):
        self.primary = primary
        self.name = primary.name
        self.info, self.path, self.max_batch = primary.info, primary.path, primary.max_batch
        self.reference_path = Path(reference)
        self.margin = float(margin)
        self._sha256 = sha256
        self._open_reference = open_reference
        self._reference: Backend | None = None
        self.slices = 0  # slices inferred
        self.rerun = 0  # of which re-run in FP32

    @classmethod
    def from_manifest(cls, primary: Backend, folder: Path, fallback: dict,
                      open_reference) -> FallbackBackend:
        """`primary` with the fallback an engine manifest's `fallback` block describes (the
        FP32 file in `folder`, its sha256, the margin); closes `primary` if the block is bad."""
        try:
            return cls(primary, Path(folder) / fallback["file"], fallback["margin"],
                       fallback["sha256"], open_reference)
        except (KeyError, TypeError) as exc:
            primary.close()
            raise ModelError(f"{folder}: unreadable fallback in its engine manifest ({exc}); "
                             "rebuild it with `ctedge build-engine`") from exc

    @property
    def reference(self) -> Backend:
        if self._reference is None:
            from ..artifact import file_sha256

            if not self.reference_path.is_file():
                raise ModelError(f"{self.reference_path}: the engine's FP32 fallback model is "
                                 "missing; rebuild the engine with `ctedge build-engine`")
            if file_sha256(self.reference_path) != self._sha256:
                raise ModelError(f"{self.reference_path}: the engine's FP32 fallback model was "
                                 "changed after the build; rebuild it with `ctedge build-engine`")
            self._reference = self._open_reference(self.reference_path)
            if self._reference.info.classes != self.info.classes:
                raise ModelError(f"{self.reference_path}: fallback classes differ from the "
                                 "engine's; rebuild it with `ctedge build-engine`")
        return self._reference

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        probs = np.array(self.primary._infer(batch), dtype=np.float32)
        near = self._count(probs)
        if near.any():
            probs[near] = self.reference.infer(np.ascontiguousarray(batch[near]))
        return probs

    @property
    def has_maps(self) -> bool:
        return self.primary.has_maps

    def _infer_maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, maps = self.primary._infer_maps(batch)
        probs, maps = np.array(probs, dtype=np.float32), np.array(maps, dtype=np.float32)
        near = self._count(probs)
        if near.any():
            ref_probs, ref_maps = self.reference.infer_maps(np.ascontiguousarray(batch[near]))
            if ref_maps.shape[1:] != maps.shape[1:]:
                raise ModelError(f"{self.reference_path}: fallback maps are {ref_maps.shape[1:]}"
                                 f", the engine's {maps.shape[1:]}; rebuild the engine")
            probs[near], maps[near] = ref_probs, ref_maps
        return probs, maps

    def _count(self, probs: np.ndarray) -> np.ndarray:
        near = near_ties(probs, self.margin)
        self.slices += len(probs)
        self.rerun += int(near.sum())
        return near

    @property
    def description(self) -> dict:
        return {**self.primary.description,
                "fallback": {"precision": "fp32", "margin": self.margin}}

    def close(self) -> None:
        self.primary.close()
        if self._reference is not None:
            self._reference.close()
