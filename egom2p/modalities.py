"""The one modality registry, its size half: how big each modality's token grid is, its vocabulary.

Its behaviour half (clip array rule, clips-table codec, standardize, presence, tokenizer pre/post-processing,
generation preset) is :mod:`egom2p.modality`, one entry per modality under the same name.

Every stage (curation, tokenizers, token DB, sampler, model, inference) reads sizes from here and
never from literals. Two configurations exist:

* ``base``: the paper's configuration (256x256 video at 8 FPS -> 5x32x32 tokens from the Cosmos
  DV4x8x8 tokenizer, FSQ levels 8,8,8,5,5,5 = 64000 codes; gaze/cam 60 frames -> 30 tokens, 256 codes).
* ``tiny``: the same structure scaled down for CPU runs and tests (64x64 video -> 5x8x8 tokens,
  FSQ 8,5,5,5 = 1000 codes; gaze/cam 30 tokens, 64 codes).

Clip-level constants (2 s at 30 FPS = 60 frames; video tokens from 16 frames at 8 FPS) are shared
by both configurations.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

# The built-in four. Code iterates a Registry (``registry.names``; a token DB's own) or egom2p.modality's
# entries, which also hold modalities registered later (egom2p.modality.register).
MODALITIES: tuple[str, ...] = ("rgb", "depth", "gaze", "cam")
VIDEO_MODALITIES: tuple[str, ...] = ("rgb", "depth")
SEQUENCE_MODALITIES: tuple[str, ...] = ("gaze", "cam")

CLIP_FPS = 30
CLIP_SECONDS = 2
CLIP_FRAMES = CLIP_FPS * CLIP_SECONDS  # 60
VIDEO_TOKEN_FPS = 8
VIDEO_TOKEN_FRAMES = VIDEO_TOKEN_FPS * CLIP_SECONDS  # 16

GAZE_VALID_RANGE = (-0.2, 1.2)  # normalised gaze outside this range counts as invalid
STANDARD_IMAGE_SIZE = 256  # default side of the square standard image in a clip

# Per-frame feature size of the sequence modalities.
GAZE_DIM = 2  # (x/W, y/H)
CAM_DIM = 9  # [R[:,0], R[:,1], t]


@dataclass(frozen=True)
class ModalitySpec:
    """How one modality is tokenized in one configuration."""

    name: str
    kind: str  # "video" or "sequence"
    frames: int  # frames fed to the tokenizer (16 for video at 8 FPS, 60 for sequences)
    fps: int  # frame rate of those frames
    token_grid: tuple[int, ...]  # (t, h, w) for video, (t,) for sequences
    vocab_size: int
    channels: int  # 3 for video, 2 for gaze, 9 for cam
    image_size: int | None = None  # video only: square side fed to the tokenizer
    fsq_levels: tuple[int, ...] | None = None  # video only

    @property
    def num_tokens(self) -> int:
        return math.prod(self.token_grid)

    def __post_init__(self):
        if self.fsq_levels is not None and math.prod(self.fsq_levels) != self.vocab_size:
            raise ValueError(f"{self.name}: FSQ levels {self.fsq_levels} do not give vocab {self.vocab_size}")


@dataclass(frozen=True)
class Registry:
    """All modalities of one configuration."""

    config: str
    modalities: dict[str, ModalitySpec] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ModalitySpec:
        if name not in self.modalities:
            raise KeyError(f"unknown modality {name!r}; known: {sorted(self.modalities)}")
        return self.modalities[name]

    def __iter__(self):
        return iter(self.modalities.values())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.modalities)

    def snapshot(self) -> dict:
        """JSON-serialisable description, stored in clip tables, token DBs and checkpoints."""
        return {"config": self.config, "modalities": {n: _spec_to_dict(s) for n, s in self.modalities.items()}}

    @classmethod
    def from_snapshot(cls, snap: dict) -> "Registry":
        mods = {n: ModalitySpec(**_dict_to_spec_kwargs(d)) for n, d in snap["modalities"].items()}
        return cls(config=snap["config"], modalities=mods)

    def check_compatible(self, other: "Registry | dict", what: str = "") -> None:
        """Raise a clear error when ``other`` describes different token grids or vocabularies."""
        other_snap = other.snapshot() if isinstance(other, Registry) else other
        mine = self.snapshot()
        if mine != other_snap:
            diffs = []
            for name in sorted(set(mine["modalities"]) | set(other_snap.get("modalities", {}))):
                a, b = mine["modalities"].get(name), other_snap.get("modalities", {}).get(name)
                if a != b:
                    diffs.append(f"{name}: {a} != {b}")
            if mine["config"] != other_snap.get("config"):
                diffs.insert(0, f"config {mine['config']!r} != {other_snap.get('config')!r}")
            raise ValueError(f"modality registry mismatch{' with ' + what if what else ''}: " + "; ".join(diffs))


def _spec_to_dict(spec: ModalitySpec) -> dict:
    d = asdict(spec)
    d["token_grid"] = list(spec.token_grid)
    d["fsq_levels"] = list(spec.fsq_levels) if spec.fsq_levels else None
    return d


def _dict_to_spec_kwargs(d: dict) -> dict:
    d = dict(d)
    d["token_grid"] = tuple(d["token_grid"])
    d["fsq_levels"] = tuple(d["fsq_levels"]) if d.get("fsq_levels") else None
    return d


def _video(name: str, image_size: int, levels: tuple[int, ...], temporal: int = 4, spatial: int = 8) -> ModalitySpec:
    latent_t = 1 + math.ceil((VIDEO_TOKEN_FRAMES - 1) / temporal)  # causal first frame: 16 -> 1 + 4 = 5
    return ModalitySpec(
        name=name,
        kind="video",
        frames=VIDEO_TOKEN_FRAMES,
        fps=VIDEO_TOKEN_FPS,
        token_grid=(latent_t, image_size // spatial, image_size // spatial),
        vocab_size=math.prod(levels),
        channels=3,
        image_size=image_size,
        fsq_levels=levels,
    )


def sequence_spec(name: str, vocab: int, channels: int) -> ModalitySpec:
    """The size spec of a sequence modality: ``channels`` features per frame, 60 frames -> 30 tokens of ``vocab``."""
    return ModalitySpec(
        name=name,
        kind="sequence",
        frames=CLIP_FRAMES,
        fps=CLIP_FPS,
        token_grid=(CLIP_FRAMES // 2,),  # Conv1d kernel = stride = 2
        vocab_size=vocab,
        channels=channels,
    )


def _build(config: str, image_size: int, levels: tuple[int, ...], seq_vocab: int) -> Registry:
    return Registry(
        config=config,
        modalities={
            "rgb": _video("rgb", image_size, levels),
            "depth": _video("depth", image_size, levels),
            "gaze": sequence_spec("gaze", seq_vocab, GAZE_DIM),
            "cam": sequence_spec("cam", seq_vocab, CAM_DIM),
        },
    )


REGISTRIES: dict[str, Registry] = {
    "base": _build("base", 256, (8, 8, 8, 5, 5, 5), 256),
    "tiny": _build("tiny", 64, (8, 5, 5, 5), 64),
}


def get_registry(config: str = "base") -> Registry:
    if config not in REGISTRIES:
        raise KeyError(f"unknown registry config {config!r}; known: {sorted(REGISTRIES)}")
    return REGISTRIES[config]
