"""The node's configuration: a frozen dataclass read from a TOML file (or built by tests).

```toml
ae_title = "CTEDGE"
port = 11112
state_dir = "/var/lib/ctedge"
allowed_aets = ["SCANNER1", "PACS"]
quiet_period_s = 30

[destination]
ae_title = "PACS"
host = "10.0.0.5"
port = 104
```
See docs/node.md for every key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..pipeline import ClassifyConfig
from .errors import NodeError


def _check_aet(value: str, what: str) -> str:
    value = str(value).strip()
    if not 1 <= len(value) <= 16 or not value.isascii() or "\\" in value:
        raise NodeError(f"{what} {value!r} is not a DICOM AE title (1-16 ASCII characters)")
    return value


@dataclass(frozen=True)
class Destination:
    """Where results go (a PACS or viewer that accepts C-STORE of SR)."""

    ae_title: str
    host: str
    port: int
    calling_ae_title: str | None = None  # default: the node's own AE title

    def __post_init__(self):
        object.__setattr__(self, "ae_title", _check_aet(self.ae_title, "destination ae_title"))
        if not 1 <= int(self.port) <= 65535:
            raise NodeError(f"destination port {self.port} is not 1..65535")


@dataclass(frozen=True)
class NodeConfig:
    """Everything `ctedge serve` needs. Times in seconds, sizes in bytes.

    state_dir holds spool/, results/, outbox/ and status.json; spool_dir moves the spool
    elsewhere (same rules: the node must be able to fsync and rename inside it).
    allowed_aets: calling AE titles accepted at association time; empty accepts any (logged
    as a warning at start). allowed_hosts: peer IP addresses accepted; empty accepts any.
    """

    state_dir: Path
    ae_title: str = "CTEDGE"
    host: str = "127.0.0.1"
    port: int = 11112
    spool_dir: Path | None = None
    allowed_aets: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    quiet_period_s: float = 30.0
    max_associations: int = 10
    max_pdu: int = 16382  # 0 = unlimited
    max_study_instances: int = 5000
    accept_other_storage: bool = True  # keep non-CT objects (not classified) or refuse them
    destination: Destination | None = None
    send_summary: bool = True  # with a destination: also the report summary (Secondary Capture)
    retry_initial_s: float = 2.0
    retry_max_s: float = 300.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None  # when set, peers must present a certificate signed by it
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("state_dir", Path(self.state_dir))
        if self.destination is not None and self.send_summary and not self.classify.maps:
            # the summary pictures the strongest slices with their class-activation maps
            set_("classify", dataclasses.replace(self.classify, maps=True))
        if self.spool_dir is not None:
            set_("spool_dir", Path(self.spool_dir))
        for key in ("tls_cert", "tls_key", "tls_ca"):
            if getattr(self, key) is not None:
                set_(key, Path(getattr(self, key)))
        set_("ae_title", _check_aet(self.ae_title, "ae_title"))
        set_("allowed_aets", tuple(_check_aet(a, "allowed_aets entry")
                                   for a in self.allowed_aets))
        set_("allowed_hosts", tuple(str(h) for h in self.allowed_hosts))
        if not 0 <= int(self.port) <= 65535:
            raise NodeError(f"port {self.port} is not 0..65535")
        if self.quiet_period_s <= 0:
            raise NodeError(f"quiet_period_s must be > 0, got {self.quiet_period_s}")
        if self.max_associations < 1:
            raise NodeError(f"max_associations must be >= 1, got {self.max_associations}")
        if self.max_pdu != 0 and self.max_pdu < 4096:
            raise NodeError(f"max_pdu must be 0 (unlimited) or >= 4096, got {self.max_pdu}")
        if self.max_study_instances < 1:
            raise NodeError("max_study_instances must be >= 1")
        if not 0 < self.retry_initial_s <= self.retry_max_s:
            raise NodeError("need 0 < retry_initial_s <= retry_max_s")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise NodeError("TLS needs both tls_cert and tls_key (or neither)")
        if self.tls_ca is not None and self.tls_cert is None:
            raise NodeError("tls_ca (client certificates) needs tls_cert and tls_key")

    @property
    def spool_root(self) -> Path:
        return self.spool_dir or self.state_dir / "spool"

    def replace(self, **changes) -> NodeConfig:
        return dataclasses.replace(self, **changes)


_CLASSIFY_KEYS = ("model", "backend", "batch_size", "rule", "workers")


def load_config(path: str | Path, **overrides) -> NodeConfig:
    """Read a TOML config; `overrides` (non-None values) win over the file's keys.

    Relative paths in the file are taken relative to the file's folder.
    """
    import tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise NodeError(f"config {path} does not exist; see docs/node.md for an example") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise NodeError(f"config {path}: cannot read it as TOML ({exc}); fix the file") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(NodeConfig)} | set(_CLASSIFY_KEYS)
    unknown = sorted(set(data) - known)
    if unknown:
        raise NodeError(f"config {path}: unknown key(s) {', '.join(unknown)}; valid: "
                        f"{', '.join(sorted(known - {'classify'}))}")
    if "state_dir" not in data:
        raise NodeError(f"config {path}: state_dir is required (where spool and results live)")
    base = path.parent
    for key in ("state_dir", "spool_dir", "tls_cert", "tls_key", "tls_ca", "model"):
        if data.get(key) is not None:
            data[key] = base / Path(str(data[key])).expanduser()
    try:
        classify = ClassifyConfig(**{k: data.pop(k) for k in _CLASSIFY_KEYS if k in data})
        dest = data.pop("destination", None)
        if dest is not None:
            if not isinstance(dest, dict):
                raise NodeError("[destination] must be a table with ae_title, host, port")
            dest = Destination(**dest)
        for key in ("allowed_aets", "allowed_hosts"):
            if key in data:
                data[key] = tuple(data[key])
        return NodeConfig(classify=classify, destination=dest, **data)
    except NodeError as exc:
        raise NodeError(f"config {path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise NodeError(f"config {path}: {exc}; see docs/node.md") from None
