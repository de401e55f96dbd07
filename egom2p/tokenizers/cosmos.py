"""Loader for NVIDIA's Cosmos DV4x8x8 discrete video tokenizer (TorchScript files in a local directory).

The checkpoint directory is what NVIDIA publishes as ``nvidia/Cosmos-Tokenizer-DV4x8x8`` (or
``Cosmos-0.1-Tokenizer-DV4x8x8``): ``encoder.jit`` and ``decoder.jit`` (``autoencoder.jit`` is not
needed). Conventions, as in NVIDIA's ``cosmos_tokenizer/video_lib.py`` (``CausalVideoTokenizer``):

* encoder input: B x 3 x T x H x W in [-1, 1] (bfloat16 on GPU), T = 1 + 4k (causal first frame);
* encoder output: a tuple whose first element is the indices B x (1 + k) x H/8 x W/8 (FSQ levels
  8,8,8,5,5,5 -> 0..63999), the second the codes B x 6 x t x h x w;
* decoder input: the indices B x t x h x w; output B x 3 x T x H x W in [-1, 1].

Nothing is downloaded: on machines without internet the files must be copied in beforehand. The
files are TorchScript programs, so load them only from a source you trust.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from ..errors import EgoM2PError

COSMOS_FILES = ("encoder.jit", "decoder.jit")
COSMOS_LEVELS = (8, 8, 8, 5, 5, 5)
COSMOS_COMPRESSION = (4, 8, 8)  # temporal, height, width


class CosmosCheckpointError(EgoM2PError, FileNotFoundError):
    """The Cosmos checkpoint directory is missing or incomplete; the message lists the expected files."""


def check_cosmos_dir(directory) -> Path:
    d = Path(directory)
    missing = [f for f in COSMOS_FILES if not (d / f).is_file()]
    if not d.is_dir() or missing:
        what = "does not exist" if not d.is_dir() else f"lacks {', '.join(missing)}"
        raise CosmosCheckpointError(
            f"{d}: Cosmos DV4x8x8 checkpoint directory {what}; expected the TorchScript files "
            f"{' and '.join(COSMOS_FILES)} from nvidia/Cosmos-Tokenizer-DV4x8x8 (copy them there; nothing is downloaded)")
    return d


def files_sha256(paths) -> str:
    """sha256 over the bytes of several files, in order (the identity of a multi-file checkpoint)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class CosmosVideoBackend:
    """Cosmos DV encoder/decoder pair with the ``encode_indices`` / ``decode_indices`` video interface."""

    levels = COSMOS_LEVELS
    compression = COSMOS_COMPRESSION

    def __init__(self, directory, device: str = "cpu", dtype: str | None = None):
        d = check_cosmos_dir(directory)
        self.directory = d
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        try:
            self.encoder = torch.jit.load(str(d / "encoder.jit"), map_location=self.device).eval()
            self.decoder = torch.jit.load(str(d / "decoder.jit"), map_location=self.device).eval()
        except Exception as e:
            raise CosmosCheckpointError(f"{d}: cannot load the Cosmos TorchScript files ({type(e).__name__}: "
                                        f"{str(e).splitlines()[0][:200]})") from e
        for m in (self.encoder, self.decoder):
            m.to(self.dtype)
            for p in m.parameters():
                p.requires_grad_(False)
        self.sha256 = files_sha256([d / f for f in COSMOS_FILES])

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, T, H, W] in [-1, 1] -> int64 indices [B, t, h, w]."""
        out = self.encoder(x.to(self.device, self.dtype))
        idx = out if isinstance(out, torch.Tensor) else out[0]
        if idx.is_floating_point():
            raise CosmosCheckpointError(f"{self.directory}/encoder.jit returned float latents {tuple(idx.shape)}; "
                                        "a discrete (DV) tokenizer returns integer indices first")
        return idx.long()

    @torch.no_grad()
    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        """indices [B, t, h, w] -> video [B, 3, T, H, W] in [-1, 1] (float32)."""
        out = self.decoder(idx.to(self.device))
        out = out if isinstance(out, torch.Tensor) else out[0]
        return out.float().clamp(-1, 1)

    def to(self, device) -> "CosmosVideoBackend":
        self.device = torch.device(device)
        self.encoder.to(self.device)
        self.decoder.to(self.device)
        return self

    def eval(self):
        return self


def is_cosmos_dir(directory) -> bool:
    d = Path(directory)
    return all((d / f).is_file() for f in COSMOS_FILES)


def cosmos_identity(directory) -> dict:
    d = check_cosmos_dir(directory)
    return {"kind": "cosmos", "name": "Cosmos-Tokenizer-DV4x8x8", "path": os.fspath(d.resolve()),
            "sha256": files_sha256([d / f for f in COSMOS_FILES])}
