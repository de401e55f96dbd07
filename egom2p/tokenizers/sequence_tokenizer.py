"""The gaze and camera tokenizer (a Transformer VQ-VAE behind :class:`~egom2p.tokenizers.base.Tokenizer`)
and its preprocessing."""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import c2w_to_pose9d, pose9d_to_c2w
from ..modalities import GAZE_VALID_RANGE, Registry
from .base import Tokenizer, TokenizerError, resolve_device


def fill_invalid_gaze(gaze: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaze [B, 60, 2] with NaN / out-of-range rows -> (filled gaze, valid mask [B, 60]).

    Invalid frames are linearly interpolated between valid neighbours (held constant at the ends);
    a clip without any valid frame is filled with the image centre (0.5, 0.5). The mask keeps them
    out of the loss and the metrics.
    """
    g = np.asarray(gaze, dtype=np.float32)
    lo, hi = GAZE_VALID_RANGE
    valid = np.all(np.isfinite(g), axis=-1) & np.all((g >= lo) & (g <= hi), axis=-1)
    out = np.empty_like(g)
    t = np.arange(g.shape[1])
    for b in range(g.shape[0]):
        v = valid[b]
        if not v.any():
            out[b] = 0.5
            continue
        for c in range(g.shape[2]):
            out[b, :, c] = np.interp(t, t[v], g[b, v, c])
    return out, valid


class SequenceTokenizer(Tokenizer):
    """gaze / cam through a :class:`~.vqvae.SequenceVQVAE`."""

    def __init__(self, modality: str, model, registry: Registry, identity: dict, norm: dict | None = None,
                 device: str | None = "cpu"):
        self.modality, self.registry, self.spec = modality, registry, registry[modality]
        self.model = model.eval()
        self.identity = identity
        self.device = resolve_device(device)
        self.model.to(self.device)
        if modality == "cam":
            if norm is None:
                raise TokenizerError("the cam tokenizer needs the 9D normalisation statistics (mean, std)")
            self.mean = np.asarray(norm["mean"], np.float32)
            self.std = np.asarray(norm["std"], np.float32)
        elif modality != "gaze":
            raise TokenizerError(f"a sequence tokenizer handles gaze or cam, not {modality!r}")

    def to(self, device):
        self.device = resolve_device(device)
        self.model.to(self.device)
        return self

    def prepare(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Standard arrays -> (model input float32 [B, 60, C], valid mask [B, 60])."""
        x = np.asarray(x, dtype=np.float32)
        n = self.spec.frames
        if self.modality == "gaze":
            if x.ndim != 3 or x.shape[1:] != (n, 2):
                raise TokenizerError(f"gaze tokenizer needs float32 [B,{n},2], got {x.shape}")
            return fill_invalid_gaze(x)
        if x.ndim != 4 or x.shape[1:] != (n, 4, 4):
            raise TokenizerError(f"cam tokenizer needs float32 [B,{n},4,4], got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise TokenizerError("cam poses must be finite")
        v = c2w_to_pose9d(x.astype(np.float64)).astype(np.float32)
        return (v - self.mean) / self.std, np.ones(x.shape[:2], bool)

    def encode(self, x) -> np.ndarray:
        inp, _ = self.prepare(x)
        with torch.no_grad():
            idx = self.model.encode_indices(torch.from_numpy(inp).to(self.device))
        return idx.cpu().numpy().astype(np.int64)

    def decode_model_space(self, tokens) -> np.ndarray:
        idx = torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=self.device)
        with torch.no_grad():
            return self.model.decode_indices(idx).float().cpu().numpy()

    def decode(self, tokens) -> np.ndarray:
        out = self.decode_model_space(tokens)
        if self.modality == "gaze":
            return out.astype(np.float32)
        v = out * self.std + self.mean
        return pose9d_to_c2w(v.astype(np.float64)).astype(np.float32)
