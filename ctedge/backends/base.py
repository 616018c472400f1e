"""The contract every inference backend keeps: load, infer probabilities, close."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..artifact import ModelInfo
from ..errors import ModelError


class Backend(ABC):
    """A loaded model that maps a float32 (N, 3, S, S) batch to (N, n_classes) probabilities.

    Subclasses set `name`, load in `__init__` (setting `self.info`, `self.path`,
    `self.max_batch`) and implement `_infer`; `infer` checks the batch first.
    """

    name: str = "base"
    info: ModelInfo
    path: Path
    max_batch: int | None = None  # None: any batch size

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32:
            raise TypeError(f"{self.name}: expected a float32 numpy batch, got "
                            f"{getattr(batch, 'dtype', type(batch).__name__)}")
        expected = self.info.input_shape
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(f"{self.name}: expected shape (N, {', '.join(map(str, expected))}), "
                             f"got {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, len(self.info.classes)), dtype=np.float32)
        step = self.max_batch or len(batch)
        chunks = [self._infer(np.ascontiguousarray(batch[i:i + step]))
                  for i in range(0, len(batch), step)]
        probs = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        if probs.shape != (len(batch), len(self.info.classes)):
            raise ModelError(f"{self.path}: model returned shape {probs.shape}, expected "
                             f"({len(batch)}, {len(self.info.classes)}); re-export it")
        return probs.astype(np.float32, copy=False)

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray: ...

    @property
    def has_maps(self) -> bool:
        """Whether this model and backend can return class-activation maps."""
        return bool(self.info.cam) and type(self)._infer_maps is not Backend._infer_maps

    def infer_maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, C), class-activation maps (N, C, h, w)), both float32.

        Only on models whose metadata declares maps (`has_maps`); plain `infer` never
        computes them.
        """
        if not self.has_maps:
            raise ModelError(f"{self.path}: this model has no class-activation maps; add them "
                             "with `ctedge export MODEL.onnx --out NEW.onnx`")
        probs = self.infer(batch[:0])  # the same input checks as infer, on an empty batch
        step = self.max_batch or max(1, len(batch))
        parts = [self._infer_maps(np.ascontiguousarray(batch[i:i + step]))
                 for i in range(0, len(batch), step)]
        if not parts:
            return probs, np.zeros((0, len(self.info.classes), 0, 0), dtype=np.float32)
        probs = np.concatenate([p for p, _ in parts]).astype(np.float32, copy=False)
        maps = np.concatenate([m for _, m in parts]).astype(np.float32, copy=False)
        n_classes = len(self.info.classes)
        if probs.shape != (len(batch), n_classes) or maps.ndim != 4 \
                or maps.shape[:2] != (len(batch), n_classes):
            raise ModelError(f"{self.path}: model returned shapes {probs.shape} and "
                             f"{maps.shape}, expected ({len(batch)}, {n_classes}) and "
                             f"({len(batch)}, {n_classes}, h, w); re-export it")
        return probs, maps

    def _infer_maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError  # backends that can return maps override this

    @property
    def description(self) -> dict:
        """What ran: for results and benchmark reports."""
        return {"backend": self.name, "precision": self.info.precision}

    def close(self) -> None:  # noqa: B027  (most backends have nothing to release)
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
