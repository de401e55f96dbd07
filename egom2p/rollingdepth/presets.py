"""RollingDepth inference settings and the official named presets.

The presets follow the public RollingDepth release (``run_video.py -p PRESET``):

==========  ==========  ===============  ========  ============  =====  =============
preset      resolution  dilations        snippet   refinement    dtype  cap dilation
==========  ==========  ===============  ========  ============  =====  =============
fast        768         1, 25            3         0 steps       fp16   yes
fast1024    1024        1, 25            3         0 steps       fp16   yes
full        1024        1, 10, 25        3         10 steps      fp16   yes
paper       768         1, 10, 25        3         10 steps      fp32   no
==========  ==========  ===============  ========  ============  =====  =============

Shared by all: one denoising step per snippet (the model is a single-step predictor), refinement
snippets of 3 frames starting at dilation 6, resolution = longest image side.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .coalign import CoalignConfig

DTYPES = ("fp16", "bf16", "fp32")


@dataclass
class RollingDepthConfig:
    """Everything that controls one RollingDepth run over a segment of frames."""

    processing_resolution: int = 768  # longest side fed to the network (0: source size); rounded to /8
    snippet_lengths: tuple[int, ...] = (3,)  # one value for all dilations, or one per dilation
    dilations: tuple[int, ...] = (1, 25)  # frame spacing inside a snippet; must include 1
    cap_dilation: bool = True  # shrink dilations that do not fit a short segment
    denoise_steps: int = 1  # diffusion steps per snippet (the released model is single-step)
    refine_steps: int = 0  # 0 disables the diffusion refinement after co-alignment
    refine_snippet_length: int = 3
    refine_start_dilation: int = 6
    dtype: str = "fp16"  # fp16 | bf16 | fp32 (fp32 is always used on CPU)
    batch_size: int = 4  # snippets per UNet call
    vae_batch_size: int = 8  # frames per VAE encode/decode call
    seed: int = 0  # initial noise (shared by all frames, as in the release)
    coalign: CoalignConfig = field(default_factory=CoalignConfig)

    def __post_init__(self):
        self.snippet_lengths = tuple(int(k) for k in self.snippet_lengths)
        self.dilations = tuple(int(d) for d in self.dilations)
        if 1 not in self.dilations:
            raise ValueError(f"dilations must include 1 (every frame needs a dense snippet), got {self.dilations}")
        if len(self.snippet_lengths) not in (1, len(self.dilations)):
            raise ValueError(f"give one snippet length or one per dilation, got {self.snippet_lengths} for {self.dilations}")
        if min(self.snippet_lengths) < 2:
            raise ValueError(f"snippet lengths must be >= 2, got {self.snippet_lengths}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.denoise_steps < 1 or self.refine_steps < 0 or self.batch_size < 1 or self.vae_batch_size < 1:
            raise ValueError("denoise_steps, batch_size and vae_batch_size must be >= 1 and refine_steps >= 0")
        if self.processing_resolution < 0:
            raise ValueError(f"processing_resolution must be >= 0, got {self.processing_resolution}")

    def lengths_per_dilation(self) -> tuple[int, ...]:
        if len(self.snippet_lengths) == 1:
            return self.snippet_lengths * len(self.dilations)
        return self.snippet_lengths


PRESETS: dict[str, dict] = {
    "fast": dict(processing_resolution=768, dilations=(1, 25), refine_steps=0, dtype="fp16", cap_dilation=True),
    "fast1024": dict(processing_resolution=1024, dilations=(1, 25), refine_steps=0, dtype="fp16", cap_dilation=True),
    "full": dict(processing_resolution=1024, dilations=(1, 10, 25), refine_steps=10, dtype="fp16", cap_dilation=True),
    "paper": dict(processing_resolution=768, dilations=(1, 10, 25), refine_steps=10, dtype="fp32", cap_dilation=False),
}


def preset_config(name: str, **overrides) -> RollingDepthConfig:
    """The named preset with ``overrides`` (None values are ignored) applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown RollingDepth preset {name!r}; known: {', '.join(PRESETS)}")
    cfg = RollingDepthConfig(**PRESETS[name])
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(cfg, **given) if given else cfg
