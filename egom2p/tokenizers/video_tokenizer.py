"""The video tokenizer (rgb, depth) (a causal FSQ video model or Cosmos behind
:class:`~egom2p.tokenizers.base.Tokenizer`) and its preprocessing (:func:`prepare_video`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import modality
from ..modalities import ModalitySpec, Registry
from ..video import pad_causal, token_frame_indices
from .base import Tokenizer, TokenizerError, resolve_device


def prepare_video(x, name: str, spec: ModalitySpec, frame_idx=None) -> torch.Tensor:
    """Standard clip rgb uint8 [B,60,H,W,3] or depth [B,60,H,W] -> B x 3 x 17 x S x S float in [-1, 1].

    Takes the 16 token frames (:func:`egom2p.video.token_frame_indices`), resizes to the registry's
    S x S, replicates depth (NaN -> 0) to 3 channels and pads time causally to 1 + 4k frames.
    """
    x = np.asarray(x)
    frame_idx = token_frame_indices() if frame_idx is None else frame_idx
    S = spec.image_size
    try:  # the modality's registry entry maps its token frames to [B, C, 16, H, W] in [-1, 1]
        arr, _ = modality.info(name).prepare(x[:, frame_idx] if x.ndim >= 2 else x, None)
    except modality.ModalityError as e:
        raise TokenizerError(str(e)) from e
    v = torch.from_numpy(arr)
    if v.shape[1] == 1:  # a gray video (depth): the 3 channels the backends take, as a view
        v = v.expand(-1, 3, -1, -1, -1)
    b, c, t, h, w = v.shape
    if (h, w) != (S, S):
        flat = v.reshape(b, c * t, h, w)
        if h > S:
            flat = F.interpolate(flat, size=(S, S), mode="area")
        else:
            flat = F.interpolate(flat, size=(S, S), mode="bilinear", align_corners=False)
        v = flat.reshape(b, c, t, S, S)
    v = pad_causal(v.permute(2, 0, 1, 3, 4)).permute(1, 2, 0, 3, 4)  # pad time to 1 + 4k
    return v.contiguous()


class VideoTokenizer(Tokenizer):
    """rgb / depth through a causal video backend with ``encode_indices`` / ``decode_indices``."""

    def __init__(self, modality_name: str, backend, registry: Registry, identity: dict, device: str | None = "cpu"):
        self.info = modality.info(modality_name)
        if self.info.tokenizer != "video":
            raise TokenizerError(f"a video tokenizer handles a video modality (rgb, depth), not {modality_name!r}")
        self.modality, self.registry, self.spec = modality_name, registry, registry[modality_name]
        self.backend = backend
        self.identity = identity
        self.device = resolve_device(device)
        self.backend.to(self.device)
        self.frame_idx = token_frame_indices()

    def to(self, device):
        self.device = resolve_device(device)
        self.backend.to(self.device)
        return self

    def prepare(self, x) -> torch.Tensor:
        """Standard clip video -> B x 3 x 17 x S x S float in [-1, 1] (16 token frames padded causally)."""
        return prepare_video(x, self.modality, self.spec, self.frame_idx)

    def encode(self, x) -> np.ndarray:
        v = self.prepare(x).to(self.device)
        idx = self.backend.encode_indices(v)
        grid = tuple(self.spec.token_grid)
        if tuple(idx.shape[1:]) != grid:
            raise TokenizerError(f"{self.identity.get('kind')} tokenizer gave a token grid {tuple(idx.shape[1:])}, "
                                 f"the registry ({self.registry.config}) says {grid}")
        out = idx.reshape(idx.shape[0], -1).cpu().numpy().astype(np.int64)
        if out.size and (out.min() < 0 or out.max() >= self.spec.vocab_size):
            raise TokenizerError(f"{self.modality} tokens outside [0, {self.spec.vocab_size})")
        return out

    def decode(self, tokens) -> np.ndarray:
        idx = torch.as_tensor(np.asarray(tokens), dtype=torch.long).reshape(-1, *self.spec.token_grid).to(self.device)
        video = self.backend.decode_indices(idx)[:, :, : self.spec.frames].float().cpu()  # [B, 3, 16, S, S]
        return self.info.postprocess(video.numpy(), None)

    def decode_expected(self, probs) -> np.ndarray:
        if not hasattr(self.backend, "decode_expected"):  # e.g. a Cosmos decoder: a TorchScript of the ids
            return super().decode_expected(probs)
        p = torch.as_tensor(probs, dtype=torch.float32, device=self.device)  # numpy or a tensor
        video = self.backend.decode_expected(p.reshape(-1, *self.spec.token_grid, p.shape[-1]))
        return self.info.postprocess(video[:, :, : self.spec.frames].float().cpu().numpy(), None)
