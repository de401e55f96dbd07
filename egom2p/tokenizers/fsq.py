"""Finite scalar quantisation (FSQ) and the project's trainable causal video tokenizer.

FSQ (Mentzer et al. 2023): each latent channel ``i`` is bounded to ``levels[i]`` integer values; the
code index is the mixed-radix number of the per-channel codes with basis ``cumprod([1] + levels[:-1])``
(the convention of Cosmos DV tokenizers: levels 8,8,8,5,5,5 -> indices 0..63999).

:class:`CausalVideoFSQ` compresses a video B x 3 x (1 + 4k) x H x W in [-1, 1] by 4x in time and 8x in
space with causal 3D convolutions (no frame sees a later frame; the first frame is encoded alone,
the "causal first frame"), quantises with FSQ, and decodes with the mirrored network. With the
registry's 17-frame (16 token frames padded with :func:`egom2p.video.pad_causal`) input it gives the
registry's 5 x (S/8) x (S/8) token grid.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


class FSQ(nn.Module):
    """Finite scalar quantiser over the last dimension (size ``len(levels)``)."""

    def __init__(self, levels: tuple[int, ...] | list[int]):
        super().__init__()
        levels = [int(v) for v in levels]
        self.levels_list = levels
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.int64), persistent=False)
        basis = [1]
        for v in levels[:-1]:
            basis.append(basis[-1] * v)
        self.register_buffer("basis", torch.tensor(basis, dtype=torch.int64), persistent=False)
        self.codebook_size = math.prod(levels)
        self.dim = len(levels)

    def bound(self, z: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """Squash z so that rounding gives levels[i] values per channel."""
        lv = self.levels.to(z.dtype)
        half_l = (lv - 1) * (1 + eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """z [..., d] -> quantised codes in [-1, 1] (straight-through gradient)."""
        b = self.bound(z)
        q = b + (torch.round(b) - b).detach()
        half_w = (self.levels // 2).to(z.dtype)
        return q / half_w

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Normalised codes [..., d] -> int64 indices [...] in [0, codebook_size)."""
        half_w = (self.levels // 2).to(codes.dtype)
        digits = torch.round(codes * half_w + half_w).long()
        return (digits * self.basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """int64 indices [...] -> normalised codes [..., d]."""
        idx = indices.long().unsqueeze(-1)
        digits = (idx // self.basis) % self.levels
        half_w = (self.levels // 2).to(torch.float32)
        return (digits.to(torch.float32) - half_w) / half_w

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.quantize(z)
        return q, self.codes_to_indices(q.detach())


# --- causal 3D convolutional autoencoder ------------------------------------------------------------


class CausalConv3d(nn.Module):
    """3D convolution padded only towards the past in time (replicating the first frame)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride_t: int = 1, stride_s: int = 1):
        super().__init__()
        self.pad_t = kernel - 1
        self.pad_s = kernel // 2
        self.conv = nn.Conv3d(cin, cout, kernel, stride=(stride_t, stride_s, stride_s), padding=(0, self.pad_s, self.pad_s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, C, T, H, W]
        if self.pad_t:
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.pad_t, -1, -1), x], dim=2)
        return self.conv(x)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over each frame separately (a norm over time would leak the future into the past)."""

    def forward(self, x):  # x [B, C, T, H, W]
        b, c, t, h, w = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, c, h, w).transpose(1, 2)


def _norm(ch: int) -> FrameGroupNorm:
    return FrameGroupNorm(min(8, ch), ch)


class ResBlock3d(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = CausalConv3d(cin, cout)
        self.norm2 = _norm(cout)
        self.conv2 = CausalConv3d(cout, cout)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Down(nn.Module):
    """Downsample 2x in space when ``spatial``, 2x in time when ``temporal`` (causal: T = 1 + 2k -> 1 + k)."""

    def __init__(self, ch: int, temporal: bool, spatial: bool = True):
        super().__init__()
        self.conv = CausalConv3d(ch, ch, 3, stride_t=2 if temporal else 1, stride_s=2 if spatial else 1)

    def forward(self, x):
        return self.conv(x)


class Up(nn.Module):
    """Upsample 2x in space when ``spatial``, 2x in time when ``temporal`` (causal: T = 1 + k -> 1 + 2k)."""

    def __init__(self, ch: int, temporal: bool, spatial: bool = True):
        super().__init__()
        self.temporal, self.spatial = temporal, spatial
        self.conv = CausalConv3d(ch, ch, 3)

    def forward(self, x):
        if self.temporal:
            x = torch.repeat_interleave(x, 2, dim=2)[:, :, 1:]  # frame 0 stays alone: 1 + k -> 1 + 2k
        if self.spatial:
            b, c, t, h, w = x.shape
            x = F.interpolate(x.reshape(b, c * t, h, w), scale_factor=2, mode="nearest").reshape(b, c, t, 2 * h, 2 * w)
        return self.conv(x)


@dataclass
class FSQVideoConfig:
    """Size of the causal FSQ video tokenizer (4x temporal, 8x spatial compression)."""

    levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)  # len - 1 down transitions: the first halve space, the last time
    num_res_blocks: int = 1
    patch_size: int = 1  # spatial pixel-unshuffle before the first convolution (cheap first 2x / 4x)
    temporal_downsample: int = 4
    spatial_downsample: int = 8
    decorrelation: float = 0.0  # weight of the latent-channel decorrelation loss (keeps the codebook in use)
    entropy: float = 0.0  # weight of the per-channel level-entropy gap (spreads each channel over its levels)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["levels"] = list(self.levels)
        d["channel_mult"] = list(self.channel_mult)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FSQVideoConfig":
        d = dict(d)
        d["levels"] = tuple(d["levels"])
        d["channel_mult"] = tuple(d["channel_mult"])
        return cls(**d)


FSQ_PRESETS = {
    "base": dict(channels=64, channel_mult=(1, 2, 4, 4), num_res_blocks=2, patch_size=1),
    # the regularisers: on the demo's clips (500 steps) the tiny tokenizer used 16% / 12% of its 1000 codes on
    # held-out RGB / depth without them (four channels moving together), 85% / 67% with 0.1 each, at the same
    # round trip (PSNR 19.5 dB, depth AbsRel 0.085); 0.3 each: 95% / 83%, 19.4 dB, 0.088
    "tiny": dict(channels=16, channel_mult=(1, 2, 4), num_res_blocks=1, patch_size=2, decorrelation=0.1, entropy=0.1),
}


class CausalVideoFSQ(nn.Module):
    """Video B x 3 x T x H x W in [-1, 1] (T = 1 + 4k) <-> FSQ indices B x (1 + k) x H/8 x W/8."""

    def __init__(self, cfg: FSQVideoConfig):
        super().__init__()
        self.cfg = cfg
        n_down = len(cfg.channel_mult) - 1
        n_space = int(math.log2(cfg.spatial_downsample // cfg.patch_size))
        n_time = int(math.log2(cfg.temporal_downsample))
        if cfg.patch_size * 2**n_space != cfg.spatial_downsample or max(n_space, n_time) > n_down:
            raise ValueError(f"FSQ video config: patch {cfg.patch_size} and {n_down} transitions cannot give "
                             f"{cfg.spatial_downsample}x spatial and {cfg.temporal_downsample}x temporal compression")
        space = [i < n_space for i in range(n_down)]
        time = [i >= n_down - n_time for i in range(n_down)]
        p = cfg.patch_size
        chs = [cfg.channels * m for m in cfg.channel_mult]
        # encoder: patchify -> conv_in -> [res blocks -> down] per level -> res -> norm -> 1x1 to FSQ dims
        enc = [CausalConv3d(3 * p * p, chs[0])]
        for i in range(n_down):
            for _ in range(cfg.num_res_blocks):
                enc.append(ResBlock3d(chs[i], chs[i]))
            enc.append(Down(chs[i], temporal=time[i], spatial=space[i]))
            enc.append(ResBlock3d(chs[i], chs[i + 1]))
        enc += [ResBlock3d(chs[-1], chs[-1]), _norm(chs[-1]), nn.SiLU(), nn.Conv3d(chs[-1], len(cfg.levels), 1)]
        self.encoder = nn.Sequential(*enc)
        self.fsq = FSQ(cfg.levels)
        # decoder: mirror
        dec = [nn.Conv3d(len(cfg.levels), chs[-1], 1), ResBlock3d(chs[-1], chs[-1])]
        for i in reversed(range(n_down)):
            dec.append(ResBlock3d(chs[i + 1], chs[i]))
            dec.append(Up(chs[i], temporal=time[i], spatial=space[i]))
            for _ in range(cfg.num_res_blocks):
                dec.append(ResBlock3d(chs[i], chs[i]))
        dec += [_norm(chs[0]), nn.SiLU(), CausalConv3d(chs[0], 3 * p * p)]
        self.decoder = nn.Sequential(*dec)

    def _patch(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, T, H, W] -> [B, 3p^2, T, H/p, W/p]
        p = self.cfg.patch_size
        if p == 1:
            return x
        b, c, t, h, w = x.shape
        y = F.pixel_unshuffle(x.transpose(1, 2).reshape(b * t, c, h, w), p)
        return y.reshape(b, t, c * p * p, h // p, w // p).transpose(1, 2)

    def _unpatch(self, x: torch.Tensor) -> torch.Tensor:
        p = self.cfg.patch_size
        if p == 1:
            return x
        b, c, t, h, w = x.shape
        y = F.pixel_shuffle(x.transpose(1, 2).reshape(b * t, c, h, w), p)
        return y.reshape(b, t, c // (p * p), h * p, w * p).transpose(1, 2)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, T, H, W] -> continuous latent before quantisation [B, t, h, w, d]."""
        return self.encoder(self._patch(x)).movedim(1, -1)

    def encode_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, 3, T, H, W] -> (codes [B, d, t, h, w] with straight-through grads, indices [B, t, h, w])."""
        q, idx = self.fsq(self.encode_latent(x))
        return q.movedim(-1, 1), idx

    def decode_codes(self, q: torch.Tensor) -> torch.Tensor:
        """codes [B, d, t, h, w] -> video [B, 3, T, H, W] (not clamped)."""
        return self._unpatch(self.decoder(q))

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_codes(x)[1]

    @torch.no_grad()
    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        q = self.fsq.indices_to_codes(idx).movedim(-1, 1)
        return self.decode_codes(q.to(next(self.parameters()).dtype)).clamp(-1, 1)

    @torch.no_grad()
    def decode_expected(self, probs: torch.Tensor) -> torch.Tensor:
        """probs [B, t, h, w, K] over the codes -> video decoded from the expected code of each position
        (per channel: the probability-weighted mean of its levels)."""
        dtype = next(self.parameters()).dtype
        codes = self.fsq.indices_to_codes(torch.arange(probs.shape[-1], device=probs.device)).to(dtype)  # [K, d]
        return self.decode_codes((probs.to(dtype) @ codes).movedim(-1, 1)).clamp(-1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, idx = self.encode_codes(x)
        return self.decode_codes(q), idx

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Reconstruction loss (L1 + L2) + ``decorrelation`` x latent channel correlation + ``entropy`` x level
        entropy gap, both over the batch; returns (loss, {"l1", "mse", "corr", "entropy_gap", "indices"})."""
        z = self.encode_latent(x)
        q, idx = self.fsq(z)
        rec = self.decode_codes(q.movedim(-1, 1))
        l1 = (rec - x).abs().mean()
        mse = ((rec - x) ** 2).mean()
        b = self.fsq.bound(z)
        corr, gap = channel_correlation(b), level_entropy_gap(b, self.fsq.levels_list)
        loss = l1 + mse
        if self.cfg.decorrelation:
            loss = loss + self.cfg.decorrelation * corr
        if self.cfg.entropy:
            loss = loss + self.cfg.entropy * gap
        return loss, {"l1": float(l1.detach()), "mse": float(mse.detach()), "corr": float(corr.detach()),
                      "entropy_gap": float(gap.detach()), "indices": idx}


def channel_correlation(z: torch.Tensor) -> torch.Tensor:
    """Mean squared off-diagonal correlation of the last-dimension channels of z [..., d] over all positions.

    FSQ's codebook is the product of the per-channel levels, so channels that move together (a tiny
    encoder trained briefly collapses three of four channels onto one direction) leave most codes
    unused even when each channel spreads over all of its levels.
    """
    f = z.reshape(-1, z.shape[-1]).float()
    f = f - f.mean(0)
    f = f / (f.std(0) + 1e-6)
    c = f.t() @ f / max(1, f.shape[0] - 1)
    d = c.shape[0]
    off = c - torch.diag(torch.diagonal(c))
    return (off**2).sum() / max(1, d * (d - 1))


def level_entropy_gap(b: torch.Tensor, levels: list[int], temperature: float = 0.25) -> torch.Tensor:
    """How far the batch's per-channel level histograms are from uniform: sum_c (log L_c - H_c) / sum_c log L_c,
    0 when every channel spreads evenly over its levels, near 1 when each sits on one level.

    ``b`` [..., d]: bounded latents (:meth:`FSQ.bound`, in level units: channel c rounds to the integers
    ``-L_c // 2 .. L_c - 1 - L_c // 2``). H_c is the entropy of the batch mean of a soft assignment of each
    value to those levels (softmax of -squared distance / ``temperature``), so the gap has a gradient. With
    :func:`channel_correlation` it keeps FSQ's product codebook in use: independent channels that each use
    all their levels use all the codes.
    """
    f = b.reshape(-1, b.shape[-1]).float()
    gap, total = f.new_zeros(()), 0.0
    for c, n in enumerate(levels):
        centres = torch.arange(n, device=f.device, dtype=f.dtype) - n // 2
        p = torch.softmax(-((f[:, c:c + 1] - centres) ** 2) / temperature, dim=-1).mean(0)
        gap = gap + math.log(n) + (p * torch.log(p.clamp_min(1e-12))).sum()
        total += math.log(n)
    return gap / total
