"""The Transformer VQ-VAE of EgoM2P for gaze and camera trajectories (paper Sec. 3.2).

Encoder:  x [B, 60, C]  --Conv1d(k=2, s=2)-->  [B, 30, D]  + fixed 1D sin-cos positions
          --> N pre-LN Transformer blocks --> LayerNorm --> residual post-MLP --> Linear -> 32-d latent
Quantiser: cosine-similarity codebook (codes and latents l2-normalised, nearest = highest cosine),
          EMA codebook updates, dead-code replacement by random latents of the batch.
Decoder:  mirror: Linear 32 -> D + positions --> N blocks --> LayerNorm --> residual post-MLP
          --> ConvTranspose1d(k=2, s=2) --> [B, 60, C]
Loss:     (masked) L2 over valid frames + ``velocity`` x (masked) L2 of the frame-to-frame differences
          + beta * commitment. The motion term keeps decoded trajectories smooth where a per-frame L2
          alone leaves jitter between the two frames a token decodes to (relative-pose errors at
          Delta = 1, the RRE/RTE of camera tracking, measure exactly that jitter).

Inputs are already normalised by the caller (:class:`~egom2p.tokenizers.SequenceTokenizer`): gaze
in [0, 1] image coordinates with invalid frames filled, camera 9D vectors z-normalised with training
statistics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class VQVAEConfig:
    in_channels: int = 2
    frames: int = 60
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    latent_dim: int = 32
    codebook_size: int = 256
    ema_decay: float = 0.99
    commitment: float = 0.25
    dead_code_threshold: float = 0.5  # EMA count of latents per batch below which a code is re-initialised
    dropout: float = 0.0
    velocity: float = 0.0  # weight of the frame-to-frame difference (motion) term of the reconstruction loss

    def to_dict(self) -> dict:
        return asdict(self)


VQVAE_PRESETS = {
    "base": dict(dim=768, depth=12, heads=12),
    "tiny": dict(dim=64, depth=2, heads=4),
}


def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """Fixed 1D sin-cos position embedding [n, dim]."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float32) / (dim / 2))
    ang = pos * omega[None]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


def _blocks(cfg: VQVAEConfig) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, int(cfg.dim * cfg.mlp_ratio), dropout=cfg.dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)


class PostMLP(nn.Module):
    """Residual MLP after the Transformer stack: x + MLP(LN(x))."""

    def __init__(self, dim: int, ratio: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * ratio)), nn.GELU(), nn.Linear(int(dim * ratio), dim))

    def forward(self, x):
        return x + self.mlp(self.norm(x))


class CosineCodebook(nn.Module):
    """Codebook on the unit sphere with EMA updates and dead-code replacement."""

    def __init__(self, size: int, dim: int, decay: float, dead_threshold: float):
        super().__init__()
        self.size, self.dim, self.decay, self.dead_threshold = size, dim, decay, dead_threshold
        self.register_buffer("embed", F.normalize(torch.randn(size, dim), dim=-1))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("cluster_size", torch.zeros(size))  # all dead: the first batch initialises the codes

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """z [..., d] (any norm) -> nearest code by cosine similarity, int64 [...]."""
        return (F.normalize(z, dim=-1) @ self.embed.t()).argmax(-1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.embed)

    @torch.no_grad()
    def ema_update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        """EMA update from normalised latents z [N, d] and their codes; replace dead codes."""
        onehot = F.one_hot(idx, self.size).to(z.dtype)  # [N, K]
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ z, alpha=1 - self.decay)
        self.embed.copy_(F.normalize(self.embed_sum, dim=-1))
        dead = self.cluster_size < self.dead_threshold
        if dead.any():
            n = int(dead.sum())
            pick = z[torch.randint(0, z.shape[0], (n,), device=z.device)]
            self.embed[dead] = pick
            self.embed_sum[dead] = pick
            self.cluster_size[dead] = 1.0

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [B, T, d] -> (quantised with straight-through grads, indices [B, T], commitment loss)."""
        zn = F.normalize(z, dim=-1)
        idx = (zn @ self.embed.t()).argmax(-1)
        q = self.lookup(idx)
        if self.training:
            self.ema_update(zn.detach().reshape(-1, self.dim), idx.reshape(-1))
        commit = F.mse_loss(zn, q.detach())
        return zn + (q - zn).detach(), idx, commit


class SequenceVQVAE(nn.Module):
    """x [B, frames, C] <-> tokens [B, frames / 2] (see module docstring)."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.cfg = cfg
        n = cfg.frames // 2
        self.register_buffer("pos", sincos_1d(n, cfg.dim), persistent=False)
        # encoder
        self.conv_in = nn.Conv1d(cfg.in_channels, cfg.dim, kernel_size=2, stride=2)
        self.enc_blocks = _blocks(cfg)
        self.enc_norm = nn.LayerNorm(cfg.dim)
        self.enc_post = PostMLP(cfg.dim, cfg.mlp_ratio)
        self.to_latent = nn.Linear(cfg.dim, cfg.latent_dim)
        self.codebook = CosineCodebook(cfg.codebook_size, cfg.latent_dim, cfg.ema_decay, cfg.dead_code_threshold)
        # decoder (mirror)
        self.from_latent = nn.Linear(cfg.latent_dim, cfg.dim)
        self.dec_blocks = _blocks(cfg)
        self.dec_norm = nn.LayerNorm(cfg.dim)
        self.dec_post = PostMLP(cfg.dim, cfg.mlp_ratio)
        self.conv_out = nn.ConvTranspose1d(cfg.dim, cfg.in_channels, kernel_size=2, stride=2)

    # -- named steps ---------------------------------------------------------------------------
    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 60, C] -> latent [B, 30, 32]."""
        h = self.conv_in(x.transpose(1, 2)).transpose(1, 2) + self.pos  # [B, 30, D]
        h = self.enc_post(self.enc_norm(self.enc_blocks(h)))
        return self.to_latent(h)

    def decode_latent(self, q: torch.Tensor) -> torch.Tensor:
        """latent [B, 30, 32] -> x [B, 60, C]."""
        h = self.from_latent(q) + self.pos
        h = self.dec_post(self.dec_norm(self.dec_blocks(h)))
        return self.conv_out(h.transpose(1, 2)).transpose(1, 2)

    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor) -> torch.Tensor:
        return self.codebook.indices(self.encode_latent(x))

    @torch.no_grad()
    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        return self.decode_latent(self.codebook.lookup(idx))

    @torch.no_grad()
    def decode_expected(self, probs: torch.Tensor) -> torch.Tensor:
        """probs [B, 30, K] over the codes -> x [B, 60, C] decoded from the expected code, put back on the unit
        sphere the codes live on (the mean direction; a one-hot distribution decodes exactly as its code)."""
        return self.decode_latent(F.normalize(probs.to(self.codebook.embed.dtype) @ self.codebook.embed, dim=-1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, 60, C] -> (reconstruction [B, 60, C], indices [B, 30], commitment loss)."""
        q, idx, commit = self.codebook(self.encode_latent(x))
        return self.decode_latent(q), idx, commit

    def loss(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """Masked L2 (mask [B, 60] bool: frames that count) + velocity x masked L2 of frame differences
        + commitment. Returns (loss, stats)."""
        rec, idx, commit = self(x)
        m = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device) if mask is None else mask.to(x.dtype)
        rec_loss = _masked_mean(((rec - x) ** 2).mean(-1), m)
        loss = rec_loss + self.cfg.commitment * commit
        stats = {"rec": float(rec_loss.detach()), "commit": float(commit.detach()), "indices": idx}
        if self.cfg.velocity:
            dv = (rec[:, 1:] - rec[:, :-1]) - (x[:, 1:] - x[:, :-1])
            vel_loss = _masked_mean((dv**2).mean(-1), m[:, 1:] * m[:, :-1])
            loss = loss + self.cfg.velocity * vel_loss
            stats["vel"] = float(vel_loss.detach())
        return loss, stats


def _masked_mean(err: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return (err * m).sum() / m.sum().clamp(min=1)
