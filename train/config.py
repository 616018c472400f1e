"""Training configuration: one frozen dataclass, normalised and validated on creation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .augment import Augmentation

TRAINABLE = ("paper", "top", "all")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SWITCH_KINDS = ("epoch", "plateau", "never")
SAMPLINGS = ("shuffle", "balanced")
KEEPS = ("best", "last")
BATCHNORMS = ("train", "frozen")


@dataclass(frozen=True)
class TrainConfig:
    """How to train one model.

    weights: "imagenet", "none" or a path to a torchvision ResNet-50 state_dict (.pth).
    trainable: "paper" (fc + layer4[2].conv1-3 with their BatchNorms; see docs/training.md)
        "top" (layer3, layer4 and fc; stem, layer1 and layer2 frozen) or "all" (needed without
        pretrained weights).
    Two-phase optimiser: Adam(adam_lr) first, then SGD(sgd_lr, momentum) from the switch:
        switch="epoch" switches at epoch `switch_epoch` (1-based, first SGD epoch);
        switch="plateau" switches when validation loss has not improved for
        `switch_patience` epochs; switch="never" stays on Adam.
    Early stopping: stop when neither validation accuracy nor loss improved for `patience`
        epochs (the counter restarts at the optimiser switch).
    precision: "auto" = bf16 autocast on CPUs with native BF16, fp16 AMP on CUDA, else fp32.
    sampling: "shuffle" (every slice once per epoch) or "balanced" (draw `epoch_size` slices
        with replacement so that every (source, class) pair weighs the same; see
        `ctedge.train.sources.balanced_weights`).
    keep: "best" (the best validation epoch) or "last" (the last epoch: when the number of
        epochs was chosen beforehand, e.g. by leave-one-source-out).
    average_from: 0 (off) or the first epoch whose steps enter a running mean of the weights
        and BatchNorm statistics (stochastic weight averaging, every step); from then on the
        mean is what is validated, evaluated on held-out sources and saved.
    batchnorm: "train" (running statistics follow the training batches) or "frozen" (every
        BatchNorm keeps the initial weights' statistics; its scale and shift still train).
    """

    epochs: int = 50
    batch_size: int = 16
    weights: str = "none"
    trainable: str = "all"
    adam_lr: float = 1e-4
    sgd_lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    switch: str = "plateau"
    switch_epoch: int = 25
    switch_patience: int = 5
    patience: int = 10
    class_weighting: bool = True
    augmentation: Augmentation = field(default_factory=Augmentation)
    precision: str = "auto"
    channels_last: bool = True
    seed: int = 0
    threads: int = 0  # 0: torch's default
    max_steps: int = 0  # > 0: stop each epoch after this many steps (smoke tests)
    label_smoothing: float = 0.0
    sampling: str = "shuffle"
    epoch_size: int = 0  # slices per epoch with balanced sampling; 0: the training set's size
    keep: str = "best"
    average_from: int = 0
    batchnorm: str = "train"

    def __post_init__(self):
        object.__setattr__(self, "weights", str(self.weights).strip())
        object.__setattr__(self, "trainable", str(self.trainable).lower())
        object.__setattr__(self, "precision", str(self.precision).lower())
        object.__setattr__(self, "switch", str(self.switch).lower())
        if isinstance(self.augmentation, dict):
            object.__setattr__(self, "augmentation", Augmentation(**self.augmentation))
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.trainable not in TRAINABLE:
            raise ValueError(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.switch not in SWITCH_KINDS:
            raise ValueError(f"switch must be one of {SWITCH_KINDS}, got {self.switch!r}")
        if min(self.adam_lr, self.sgd_lr) <= 0 or not 0 <= self.momentum < 1:
            raise ValueError("learning rates must be > 0 and momentum in [0, 1)")
        if self.switch_epoch < 1 or self.switch_patience < 1 or self.patience < 1:
            raise ValueError("switch_epoch, switch_patience and patience must be >= 1")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.keep not in KEEPS:
            raise ValueError(f"keep must be one of {KEEPS}, got {self.keep!r}")
        if self.batchnorm not in BATCHNORMS:
            raise ValueError(f"batchnorm must be one of {BATCHNORMS}, got {self.batchnorm!r}")
        if self.average_from < 0:
            raise ValueError("average_from must be >= 0 (0: no weight averaging)")
        if self.epoch_size < 0:
            raise ValueError("epoch_size must be >= 0")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError("label_smoothing must be in [0, 1)")
        if self.trainable != "all" and self.weights == "none":
            raise ValueError("trainable='paper' freezes almost the whole network; without "
                             "pretrained weights use trainable='all'")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["augmentation"] = self.augmentation.to_dict()
        return out
