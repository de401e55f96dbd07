"""Tokenizers: standard-clip arrays <-> discrete tokens, one per modality, behind one interface.

* gaze, cam: the Transformer VQ-VAE (:mod:`.vqvae`), 60 frames -> 30 tokens;
* rgb, depth: a causal video tokenizer with FSQ indices, either NVIDIA's Cosmos DV4x8x8 TorchScript
  checkpoint (:mod:`.cosmos`) or the project's own trainable one (:mod:`.fsq`); depth goes through
  the same tokenizer as 3-channel inverse depth (NaN -> 0).

``Tokenizer.encode`` takes batched standard-clip arrays and returns int64 [B, spec.num_tokens]:

=====  ==============================  ==============================================
name   encode input                    decode output
=====  ==============================  ==============================================
rgb    uint8 [B, 60, H, W, 3]          uint8 [B, 16, S, S, 3] (the 16 token frames, 8 FPS)
depth  float32 [B, 60, H, W] in [0,1]  float32 [B, 16, S, S] in [0, 1]
gaze   float32 [B, 60, 2], NaN invalid float32 [B, 60, 2]
cam    float32 [B, 60, 4, 4] c2w       float32 [B, 60, 4, 4]
=====  ==============================  ==============================================

Checkpoints: a directory per modality with ``config.json`` (kind, modality, registry config name and
snapshot, model config, normalisation statistics, training and evaluation summaries, and the sha256
and size of the weights) and ``model.safetensors``; or, for Cosmos, a directory with ``encoder.jit``
and ``decoder.jit``. Both files are written through a rename, config.json last; loading verifies the
weights against the recorded sha256 and names a damaged or truncated file.
:func:`load_tokenizers` reads ``DIR/{rgb,depth,gaze,cam}/`` and checks every checkpoint against the
modality registry.

The code: :mod:`.base` (the :class:`Tokenizer` interface, :class:`TokenizerError`),
:mod:`.sequence_tokenizer` (gaze, cam), :mod:`.video_tokenizer` (rgb, depth and :func:`prepare_video`),
:mod:`.checkpoints` (:func:`save_tokenizer`, :func:`load_tokenizer`, :func:`load_tokenizers`); this package
re-exports them.
"""

from __future__ import annotations

from ..integrity import file_sha256
from .base import Tokenizer, TokenizerError, resolve_device
from .checkpoints import CONFIG_FILE, WEIGHTS_FILE, load_tokenizer, load_tokenizers, save_tokenizer
from ..modality.gaze import fill_invalid_gaze
from .sequence_tokenizer import SequenceTokenizer
from .video_tokenizer import VideoTokenizer, prepare_video

__all__ = [
    "Tokenizer", "SequenceTokenizer", "VideoTokenizer", "TokenizerError", "fill_invalid_gaze", "load_tokenizer",
    "load_tokenizers", "save_tokenizer", "file_sha256", "prepare_video", "resolve_device", "CONFIG_FILE",
    "WEIGHTS_FILE",
]
