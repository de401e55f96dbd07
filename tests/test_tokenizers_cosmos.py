"""Cosmos DV4x8x8 loader: a tiny TorchScript encoder/decoder pair in NVIDIA's layout and I/O conventions.

The test scripts its own pair (no weights can be downloaded here): the encoder takes B x 3 x T x H x W
in [-1, 1], pools 4x8x8 causally (first frame alone), quantises 6 channels with FSQ levels
8,8,8,5,5,5 and returns ``(indices [B, t, h, w], codes [B, 6, t, h, w], dummy)`` like the published
``encoder.jit``; the decoder maps indices back to B x 3 x T x H x W in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from factories import make_clip

from egom2p.modalities import get_registry
from egom2p.tokenizers import TokenizerError, VideoTokenizer, load_tokenizer, load_tokenizers
from egom2p.tokenizers.cosmos import CosmosCheckpointError

torch.set_num_threads(1)


class TinyCosmosEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv3d(3, 6, 1)
        self.register_buffer("levels", torch.tensor([8, 8, 8, 5, 5, 5]))
        self.register_buffer("basis", torch.tensor([1, 8, 64, 512, 2560, 12800]))

    def forward(self, x: torch.Tensor):
        first = F.avg_pool3d(x[:, :, :1], (1, 8, 8))
        rest = F.avg_pool3d(x[:, :, 1:], (4, 8, 8))
        z = self.proj(torch.cat([first, rest], 2).float())  # [B, 6, t, h, w]
        half = (self.levels // 2).float().view(1, 6, 1, 1, 1)
        digits = torch.clamp(torch.round(torch.tanh(z) * half + half), torch.zeros_like(half),
                             self.levels.view(1, 6, 1, 1, 1).float() - 1)
        idx = (digits.long() * self.basis.view(1, 6, 1, 1, 1)).sum(1)
        return idx, (digits - half) / half, torch.zeros(1)


class TinyCosmosDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("levels", torch.tensor([8, 8, 8, 5, 5, 5]))
        self.register_buffer("basis", torch.tensor([1, 8, 64, 512, 2560, 12800]))

    def forward(self, idx: torch.Tensor):
        digits = (idx.unsqueeze(1) // self.basis.view(1, 6, 1, 1, 1)) % self.levels.view(1, 6, 1, 1, 1)
        v = digits[:, :3].float() / 7 * 2 - 1  # [B, 3, t, h, w]
        first = v[:, :, :1]
        rest = v[:, :, 1:].repeat_interleave(4, dim=2)
        out = torch.cat([first, rest], 2).repeat_interleave(8, dim=3).repeat_interleave(8, dim=4)
        return out.clamp(-1, 1)


@pytest.fixture(scope="module")
def cosmos_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cosmos")
    for m in ("rgb", "depth"):
        (d / m).mkdir()
        torch.jit.script(TinyCosmosEncoder()).save(str(d / m / "encoder.jit"))
        torch.jit.script(TinyCosmosDecoder()).save(str(d / m / "decoder.jit"))
    return d


def test_cosmos_loads_and_tokenizes_with_base_grid(cosmos_dir):
    toks = load_tokenizers(cosmos_dir)  # no config.json: modality from the folder, base registry
    reg = get_registry("base")
    assert set(toks) == {"rgb", "depth"}
    rgb = toks["rgb"]
    assert isinstance(rgb, VideoTokenizer) and rgb.identity["kind"] == "cosmos" and len(rgb.identity["sha256"]) == 64
    clip = make_clip(size=64, seed=3)  # resized to 256 x 256, 16 frames padded to 17
    t = rgb.encode(clip.rgb[None])
    assert t.shape == (1, reg["rgb"].num_tokens) == (1, 5 * 32 * 32)
    assert t.min() >= 0 and t.max() < 64000
    video = rgb.decode(t)
    assert video.shape == (1, 16, 256, 256, 3) and video.dtype == np.uint8
    d = toks["depth"].encode(clip.depth[None])
    assert d.shape == (1, 5120)
    dd = toks["depth"].decode(d)
    assert dd.shape == (1, 16, 256, 256) and 0 <= dd.min() and dd.max() <= 1


def test_cosmos_causal_first_frame(cosmos_dir):
    tok = load_tokenizer(cosmos_dir / "rgb", registry="base")
    clip = make_clip(size=64, seed=4)
    a = tok.encode(clip.rgb[None]).reshape(5, 32, 32)
    changed = clip.rgb.copy()
    changed[1:] = 255 - changed[1:]  # everything after the first frame
    b = tok.encode(changed[None]).reshape(5, 32, 32)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[1:], b[1:])


def test_cosmos_missing_files_named(tmp_path, cosmos_dir):
    with pytest.raises(CosmosCheckpointError, match="encoder.jit and decoder.jit"):
        load_tokenizer(tmp_path / "rgb")
    (tmp_path / "rgb").mkdir()
    (tmp_path / "rgb" / "encoder.jit").write_bytes((cosmos_dir / "rgb" / "encoder.jit").read_bytes())
    with pytest.raises(CosmosCheckpointError, match="lacks decoder.jit"):
        load_tokenizer(tmp_path / "rgb")
    (tmp_path / "rgb" / "decoder.jit").write_bytes(b"not torchscript")
    with pytest.raises(CosmosCheckpointError, match="cannot load"):
        load_tokenizer(tmp_path / "rgb")


def test_cosmos_refuses_tiny_registry(cosmos_dir):
    with pytest.raises(TokenizerError, match="8,8,8,5,5,5"):
        load_tokenizer(cosmos_dir / "rgb", registry="tiny")
