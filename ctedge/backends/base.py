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
    def description(self) -> dict:
        """What ran: for results and benchmark reports."""
        return {"backend": self.name, "precision": self.info.precision}

    def close(self) -> None:  # noqa: B027  (most backends have nothing to release)
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
