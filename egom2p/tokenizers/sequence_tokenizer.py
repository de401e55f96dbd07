"""The gaze and camera tokenizer (a Transformer VQ-VAE behind :class:`~egom2p.tokenizers.base.Tokenizer`)
and its preprocessing."""

from __future__ import annotations

import numpy as np
import torch

from .. import modality
from ..modalities import Registry
from .base import Tokenizer, TokenizerError, resolve_device


class SequenceTokenizer(Tokenizer):
    """A sequence modality (gaze, cam, ...) through a :class:`~.vqvae.SequenceVQVAE`; its registry entry's
    ``prepare`` / ``postprocess`` map standard arrays to the model's space and back (with ``norm``, the
    checkpoint's normalisation statistics, for a modality whose entry has ``norm_stats``)."""

    def __init__(self, modality_name: str, model, registry: Registry, identity: dict, norm: dict | None = None,
                 device: str | None = "cpu"):
        self.modality, self.registry, self.spec = modality_name, registry, registry[modality_name]
        self.info = modality.info(modality_name)
        if self.info.tokenizer != "sequence":
            raise TokenizerError(f"a sequence tokenizer handles a sequence modality, not {modality_name!r}")
        if self.info.norm_stats is not None and norm is None:
            raise TokenizerError(f"the {modality_name} tokenizer needs its normalisation statistics (mean, std)")
        self.model = model.eval()
        self.identity = identity
        self.norm = None if norm is None else {k: np.asarray(v, np.float32) for k, v in norm.items()}
        self.device = resolve_device(device)
        self.model.to(self.device)

    def to(self, device):
        self.device = resolve_device(device)
        self.model.to(self.device)
        return self

    def prepare(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Standard arrays -> (model input float32 [B, 60, C], valid mask [B, 60])."""
        n = self.spec.frames
        x = np.asarray(x)
        if x.ndim < 2 or x.shape[1] != n:
            raise TokenizerError(f"{self.modality} tokenizer needs [B,{n},...], got {x.shape}")
        try:
            return self.info.prepare(x, self.norm)
        except modality.ModalityError as e:
            raise TokenizerError(str(e)) from e

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
        return self.info.postprocess(self.decode_model_space(tokens), self.norm)

    def decode_expected(self, probs) -> np.ndarray:
        p = torch.as_tensor(probs, dtype=torch.float32, device=self.device)  # numpy or a tensor
        with torch.no_grad():
            out = self.model.decode_expected(p).float().cpu().numpy()
        return self.info.postprocess(out, self.norm)
