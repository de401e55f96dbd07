"""RollingDepth (Ke et al., CVPR 2025) video-depth pseudo-labelling, as used by EgoM2P curation.

* :mod:`.coalign` -- joint robust per-snippet scale/shift solve and merge (numpy, no network);
* :mod:`.pipeline` -- loading a ``prs-eth/rollingdepth-v1-0`` directory through diffusers and
  running snippet inference with cross-frame self-attention;
* :mod:`.presets` -- inference settings and the official presets (fast, fast1024, full, paper);
* :mod:`.random_init` -- randomly initialised pipelines of the real or a tiny size (tests, cost checks);
* :mod:`.viz` -- pictures of depth videos and of the co-alignment.

The curation annotator is :mod:`egom2p.annotators.rollingdepth`.
"""

from .coalign import CoalignConfig, CoalignResult, Snippet, coalign, merge_snippets, snippet_indices, solve_scale_shift
from .presets import PRESETS, RollingDepthConfig, preset_config

__all__ = ["CoalignConfig", "CoalignResult", "Snippet", "coalign", "merge_snippets", "snippet_indices",
           "solve_scale_shift", "PRESETS", "RollingDepthConfig", "preset_config"]
