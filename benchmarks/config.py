"""What `ctedge bench` measures and how hard: one frozen config, with `quick` and `full` presets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from .stats import TimingPolicy

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_MANIFEST = REPO / "data" / "manifests" / "ucsd-covid-ct.csv"
DEFAULT_STUDIES = (*(SHARED_DATA / "covid-ct-md" / s
                     for s in ("COVID-19/P001", "CAP/cap001", "Normal/normal001")),
                   REPO / "samples" / "P001-every8th")

SECTIONS = ("accuracy", "throughput", "peers", "studies", "import_time", "reading_time")
# Peers: other stacks timed against ctedge's engine in the same run.
PEERS = ("torch-fp32", "torch-bf16-cl", "torch-cuda-fp16-graph", "torch-cuda-bf16-graph",
         "ort-fp32", "openvino-fp32", "openvino-int8")
BACKENDS = ("onnxruntime", "openvino", "tensorrt")


@dataclass(frozen=True)
class BenchConfig:
    """Everything one benchmark run needs.

    models: ctedge models under test (.onnx files or engine folders); the FP32 one is the
        accuracy reference. Empty: the FP32 default model plus its siblings in models/.
    engine: the ctedge model peers are compared with (None: the fastest-form model found,
        CPU INT8 engine first, then FP32).
    backends: ctedge backends to run; a requested one that is not installed is an error.
        Empty: every backend the models need that is installed.
    peers: peer stacks; `requested_peers` True means they were named explicitly (a missing one
        is then an error), False means "whatever is installed" (a missing one is reported).
    data / data_root / split / limit: the labelled set for accuracy (a manifest CSV or a class
        folder); limit caps the number of slices (0: all).
    calibration: slices for OpenVINO INT8 (NNCF); None takes the INT8 model's own calibration
        set when its metadata names one, else the labelled set's `val` split.
    batch_sizes: for model throughput; peer_batch for peers.
    studies: DICOM study folders for the end-to-end section; cold_runs fresh processes each.
    threads: intra-op threads for every runtime (0: the runtime's default).
    """

    out: Path = Path("bench-out")
    sections: tuple[str, ...] = SECTIONS
    models: tuple[Path, ...] = ()
    engine: Path | None = None
    backends: tuple[str, ...] = ()
    peers: tuple[str, ...] = PEERS
    requested_peers: bool = False
    checkpoint: Path | None = None  # PyTorch weights for torch peers (None: random, speed only)
    data: Path = DEFAULT_MANIFEST
    data_root: Path = SHARED_DATA
    split: str = "test"
    limit: int = 0
    calibration: Path | None = None
    calibration_size: int = 512  # export's default, so the same slices are chosen
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    peer_batch: int = 16
    peer_rounds: int = 4
    studies: tuple[Path, ...] = DEFAULT_STUDIES
    cold_runs: int = 3
    warm_runs: int = 3
    import_runs: int = 5
    threads: int = 0
    timing: TimingPolicy = field(default_factory=TimingPolicy.full)
    plots: bool = True
    profile: str = "full"

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "models", tuple(Path(m) for m in self.models))
        object.__setattr__(self, "studies", tuple(Path(s) for s in self.studies))
        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "data_root", Path(self.data_root))
        for name in ("engine", "checkpoint", "calibration"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else Path(value))
        for name in ("sections", "backends", "peers"):
            object.__setattr__(self, name, tuple(dict.fromkeys(getattr(self, name))))
        object.__setattr__(self, "batch_sizes",
                           tuple(sorted({int(b) for b in self.batch_sizes})))
        _check_names("section", self.sections, SECTIONS)
        _check_names("backend", self.backends, BACKENDS)
        _check_names("peer", self.peers, PEERS)
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        for name in ("peer_batch", "peer_rounds", "cold_runs", "warm_runs", "import_runs",
                     "calibration_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.limit < 0 or self.threads < 0:
            raise ValueError("limit and threads must be >= 0")
        if self.split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be train, val, test or all, got {self.split!r}")
        if self.profile not in ("quick", "full"):
            raise ValueError(f"profile must be quick or full, got {self.profile!r}")

    @classmethod
    def full(cls, **overrides) -> BenchConfig:
        """The publishable run: defaults above (minutes to an hour on a 2-core CPU)."""
        return cls(**overrides)

    @classmethod
    def quick(cls, **overrides) -> BenchConfig:
        """CI smoke run: every path exercised, few iterations, numbers not for reading."""
        base = dict(batch_sizes=(1, 2), peer_batch=2, peer_rounds=2, cold_runs=1, warm_runs=1,
                    import_runs=2, limit=16, calibration_size=8, timing=TimingPolicy.quick(),
                    profile="quick")
        return cls(**{**base, **overrides})

    def with_(self, **changes) -> BenchConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [str(v) if isinstance(v, Path) else v for v in value]
            elif isinstance(value, TimingPolicy):
                value = value.to_dict()
            out[name] = value
        return out


def _check_names(kind: str, names: tuple[str, ...], valid: tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown {kind}(s) {unknown}; valid: {', '.join(valid)}")
