"""Typed configuration of one curation run: the single source of ``egom2p curate``'s flags, the
``curate`` flow's parameters and the curate deployments' defaults in prefect.yaml (see
:mod:`egom2p.runconfig`), and the run's fail-fast checks (:meth:`CurateConfig.check`)."""

from __future__ import annotations

import fcntl
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import storage
from ..adapters.base import KNOWN_DATASETS
from ..errors import EgoM2PError
from ..annotators.base import ANNOTATORS
from ..modalities import CLIP_FRAMES, STANDARD_IMAGE_SIZE
from ..runconfig import ConfigError, absolute, check_output, is_uri, option, param

EXECUTORS = ("ray", "local")
#: Depth annotators that run a model loaded from a checkpoint folder (``depth_checkpoint``).
MODEL_ANNOTATORS = ("rollingdepth",)


class CurateError(EgoM2PError, RuntimeError):
    """A run cannot start (unknown dataset, missing adapter or checkpoint, bad options, busy output)."""


@dataclass
class CurateConfig:
    """What one ``curate`` run does. ``out`` may be a local folder or an object-store URI (``s3://bucket/clips``)."""

    dataset: str = option(help=f"dataset name ({', '.join(KNOWN_DATASETS)})", positional=True)
    raw: str = option(help="raw root of the dataset (its adapter's layout, see datasets/<dataset>.yaml)",
                      metavar="DIR", deploy="data/raw/{dataset}")
    out: str = option(help="output folder: OUT/<dataset>.lance, .quarantine.jsonl, .summary.json",
                      metavar="DIR", deploy="data/clips")
    limit: int | None = option(None, "curate at most N sequences (the first ones in discovery order)", metavar="N")
    stride: int = option(CLIP_FRAMES, "frames between clip starts (60: back-to-back 2 s clips)")
    depth: str | None = option(None, "depth annotator (default: the dataset's)", choices=ANNOTATORS)
    depth_checkpoint: str | None = option(None, "checkpoint folder of a model depth annotator (rollingdepth)",
                                          metavar="DIR")
    depth_options: dict = option(default_factory=dict, help="extra depth annotator option", flag="--depth-option")
    size: int = option(STANDARD_IMAGE_SIZE, "side of the square standard image")
    windows_per_task: int = option(4, "clip windows of one sequence handled by one Ray task")
    write_batch: int = option(8, "clips per Lance commit, made by a worker (a killed run loses at most the "
                                 "batches in flight)")
    write_interval_s: float = option(20.0, "a progress line in the log at least every this many seconds")
    annotate_actors: int = option(0, "run annotation on N Ray actors (model annotators)")
    annotate_gpus: float = option(0.0, "GPUs per annotation actor")
    num_cpus: int | None = option(None, "CPUs of a local Ray started by the run (default: all; ignored with "
                                        "RAY_ADDRESS)")
    executor: str = option("ray", "where the stages run: ray (Ray Data: a local Ray, or RAY_ADDRESS) or local "
                                  "(every stage in this process)", choices=EXECUTORS)
    storage_options: dict = option(default_factory=dict, help="object-store option for an s3:// --out (default: "
                                   "from AWS_* / EGOM2P_STORAGE_OPTIONS)", flag="--storage-option")

    def __post_init__(self):
        def bad(name: str, problem: str):
            raise ConfigError(f"{param(CurateConfig, name)} {problem}")

        if self.stride <= 0:
            bad("stride", f"must be positive, got {self.stride}")
        if self.size <= 0 or self.size % 2:
            bad("size", f"must be a positive even number of pixels (H.264), got {self.size}")
        if self.limit is not None and self.limit <= 0:
            bad("limit", f"must be positive, got {self.limit}")
        for name in ("windows_per_task", "write_batch"):
            if getattr(self, name) <= 0:
                bad(name, f"must be positive, got {getattr(self, name)}")
        if self.write_interval_s <= 0:
            bad("write_interval_s", f"must be positive, got {self.write_interval_s}")
        if self.annotate_actors < 0 or self.annotate_gpus < 0:
            bad("annotate_actors", "and annotate_gpus must not be negative")
        if self.num_cpus is not None and self.num_cpus <= 0:
            bad("num_cpus", f"must be positive, got {self.num_cpus}")
        if self.executor not in EXECUTORS:
            bad("executor", f"must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        self.storage_options = dict(self.storage_options or {})
        self.raw, self.out = absolute(self.raw), absolute(self.out)  # relative to where the run starts
        self.depth_options = dict(self.depth_options or {})
        given = absolute(self.depth_options["checkpoint"]) if self.depth_options.get("checkpoint") else None
        ckpt = absolute(self.depth_checkpoint) if self.depth_checkpoint else None
        if ckpt and given and ckpt != given:
            bad("depth_checkpoint", f"{ckpt} differs from depth_options checkpoint={given}")
        self.depth_checkpoint = ckpt or given
        if self.depth_checkpoint:  # the annotator reads it from its options
            self.depth_options["checkpoint"] = self.depth_checkpoint

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

    # ------------------------------------------------------------------------------ fail fast
    def resolve_depth(self, adapter) -> str:
        """The depth annotator of the run (``depth`` or the adapter's default), checked against the dataset."""
        depth = self.depth or adapter.default_depth
        if depth not in ANNOTATORS:
            raise CurateError(f"{param(CurateConfig, 'depth')}: unknown depth annotator {depth!r}; "
                              f"known: {', '.join(ANNOTATORS)}")
        if depth in ("render", "sensor") and adapter.modalities and "depth" not in adapter.modalities:
            raise CurateError(f"depth annotator {depth!r} reads the source's depth, but dataset {self.dataset!r} "
                              f"has none (modalities: {', '.join(adapter.modalities)}); use rollingdepth or none")
        if depth in MODEL_ANNOTATORS and not self.depth_checkpoint:
            default = "" if self.depth else " (its default)"
            raise CurateError(f"dataset {self.dataset!r} uses the {depth} depth annotator{default}, which needs "
                              f"{param(CurateConfig, 'depth_checkpoint')}: a local checkpoint folder (see README, "
                              f"Depth annotators); or set {param(CurateConfig, 'depth')} to none")
        return depth

    def check(self, adapter=None):
        """Everything a run needs that can be checked in well under a second, before Prefect, Ray or
        any model starts: the dataset's adapter, the depth annotator (and its checkpoint folder), a
        readable raw root, an output that is a folder nobody else is curating this dataset into.
        Returns the adapter; raises :class:`CurateError` (or ConfigError) naming the parameter."""
        from ..adapters import get_adapter

        if adapter is None:
            try:
                adapter = get_adapter(self.dataset)
            except Exception as e:  # noqa: BLE001 - unknown dataset, no adapter module
                raise CurateError(f"cannot curate {self.dataset!r}: {e}") from None
        self.resolve_depth(adapter)
        if self.depth_checkpoint and not is_uri(self.depth_checkpoint) and not Path(self.depth_checkpoint).is_dir():
            raise CurateError(f"{param(CurateConfig, 'depth_checkpoint')}: {self.depth_checkpoint} is not a folder")
        raw = Path(self.raw)
        if not raw.exists():
            raise CurateError(f"{param(CurateConfig, 'raw')}: raw root {raw} of {self.dataset!r} does not exist")
        if not os.access(raw, os.R_OK | (os.X_OK if raw.is_dir() else 0)):
            raise CurateError(f"{param(CurateConfig, 'raw')}: raw root {raw} is not readable")
        check_output(CurateConfig, "out", self.out, "folder")
        if not is_uri(self.out) and Path(self.lock_path).exists():
            lock = take_lock(self.lock_path)
            if lock is None:
                raise self.busy()
            lock.close()
        return adapter

    def busy(self) -> CurateError:
        return CurateError(f"another curate run of {self.dataset!r} is writing {self.out} (lock {self.lock_path}); "
                           f"wait for it or use another {param(CurateConfig, 'out')}")


def take_lock(path: str):
    """The open lock file ``path`` with an exclusive ``flock`` held, or None when another process holds it.
    (Local folders only; the OS releases the lock when the holder dies.)"""
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f
