"""Typed configuration of one curation run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .. import storage
from ..modalities import CLIP_FRAMES, STANDARD_IMAGE_SIZE


@dataclass
class CurateConfig:
    """What one ``curate`` run does. ``out`` may be a local folder or an object-store URI (``s3://bucket/clips``)."""

    dataset: str  # a name from egom2p.adapters.KNOWN_DATASETS
    raw: str  # the dataset's raw root (its adapter's layout)
    out: str  # output root: OUT/<dataset>.lance, .quarantine.jsonl, .summary.json
    limit: int | None = None  # curate at most this many sequences (the first ones in discovery order)
    stride: int = CLIP_FRAMES  # frames between clip starts (60 = back-to-back 2 s clips)
    depth: str | None = None  # depth annotator; None -> the adapter's default_depth
    depth_options: dict = field(default_factory=dict)  # passed to make_annotator (e.g. checkpoint=DIR)
    size: int = STANDARD_IMAGE_SIZE  # side of the square standard image
    windows_per_task: int = 4  # clip windows of one sequence handled by one Ray task
    write_batch: int = 8  # clips per Lance commit, made by a worker (a killed run loses at most the batches in flight)
    write_interval_s: float = 20.0  # a progress line in the log at least this often
    annotate_actors: int = 0  # > 0: annotate on a pool of this many Ray actors (model annotators)
    annotate_gpus: float = 0.0  # GPUs per annotate actor
    num_cpus: int | None = None  # CPUs of a local Ray started by the run (None: all); ignored with RAY_ADDRESS
    executor: str = "ray"  # ray (Ray Data: local Ray or RAY_ADDRESS) | local (every stage in this process)
    storage_options: dict | None = None  # object-store options for ``out`` (default: from the environment)

    def __post_init__(self):
        if self.stride <= 0:
            raise ValueError(f"stride must be positive, got {self.stride}")
        if self.size <= 0 or self.size % 2:
            raise ValueError(f"size must be a positive even number of pixels (H.264), got {self.size}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be positive, got {self.limit}")
        if self.windows_per_task <= 0 or self.write_batch <= 0:
            raise ValueError("windows_per_task and write_batch must be positive")
        if self.executor not in ("ray", "local"):
            raise ValueError(f"executor must be 'ray' or 'local', got {self.executor!r}")

    @property
    def table_path(self) -> str:
        return storage.join(self.out, f"{self.dataset}.lance")

    @property
    def quarantine_path(self) -> str:
        return storage.join(self.out, f"{self.dataset}.quarantine.jsonl")

    @property
    def summary_path(self) -> str:
        return storage.join(self.out, f"{self.dataset}.summary.json")

    @property
    def plot_path(self) -> str:
        return storage.join(self.out, f"{self.dataset}.summary.png")

    @property
    def lock_path(self) -> str:
        return storage.join(self.out, f".{self.dataset}.curate.lock")

    @property
    def options(self) -> dict | None:
        """Storage options for ``out`` (explicit ones over the environment's; None for a local folder)."""
        return storage.storage_options(self.out, self.storage_options)

    def to_dict(self) -> dict:
        return asdict(self)
