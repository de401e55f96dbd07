"""The EgoM2P any-to-any model: a T5-style encoder-decoder over multimodal discrete tokens.

Read top to bottom:

* :class:`ModelConfig`: sizes (``tiny`` for CPU, ``base`` = T5-Base scale, dim 768, 12+12 layers).
* positional tables: fixed sin-cos, 1D over the 30 positions of gaze/cam, 3D over (t, h, w) of the
  video grids with dim/3 channels per axis (:func:`sincos_1d`, :func:`sincos_3d`).
* blocks: pre-norm, LayerNorm without bias, multi-head attention, SwiGLU MLP without biases.
* masks (:func:`attention_masks`): the encoder's padding and the decoder's within-modality rule,
  built once per forward in the form the attention kernel wants: for ``F.scaled_dot_product_attention``
  (``sdpa``) no mask at all where nothing is masked (so the flash kernels run), else a boolean
  [B, 1, Nq|1, Nk] mask; for FlexAttention (``flex``) block masks, so blocks that hold only padding or
  only other modalities are skipped. ``EgoM2P.attention`` picks the kernel (``auto``: flex for
  training on CUDA, sdpa otherwise); both compute the same function.
* :class:`EgoM2P`: ``forward(batch)`` runs the named steps
  ``embed_inputs -> encode -> embed_targets -> decode -> logits -> loss``.

A batch is a dict of tensors produced by the masking sampler (egom2p.sampler), one row per sample
with a fixed number of input and target slots (the budgets)::

    enc_tok, enc_mod, enc_pos : int64 [B, Ni]   token id, modality index, position in its grid
    enc_valid                 : bool  [B, Ni]   False on padding slots
    dec_tok, dec_mod, dec_pos : int64 [B, Nt]   the same for the targets (dec_tok = labels)
    dec_valid                 : bool  [B, Nt]

Modality indices follow ``model.modalities`` (the registry's order). Decoder inputs are a learned
mask token + position + modality embedding (the target ids are only labels); the decoder attends to
itself only within the same modality and to the encoder through cross-attention; logits of a
modality come from its decoder embedding matrix (tied output projection, [vocab_m, dim]).

A sample with no valid input slot (the unconditional pass of classifier-free guidance) attends to
its first encoder slot, a zero vector: a well defined "empty context" rather than NaNs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .modalities import Registry

# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    dim: int = 768
    encoder_layers: int = 12
    decoder_layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0  # SwiGLU hidden = 2/3 * mlp_ratio * dim (rounded to a multiple of 8)
    registry: str = "base"  # which modality registry the vocabularies come from
    init_std: float = 0.02
    # factor on the fixed sin-cos positions: at 1.0 their rows have norm sqrt(dim / 2), 10-20x a trained tiny
    # token embedding; below 1 a token's content weighs more in the sum (README, experiments table)
    pos_scale: float = 1.0

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(d).items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"model dim {self.dim} is not divisible by heads {self.heads}")
        if self.dim % 6:
            raise ValueError(f"model dim {self.dim} must be divisible by 6 (3D sin-cos: dim/3 even channels per axis)")

    @property
    def mlp_hidden(self) -> int:
        h = int(2 * self.mlp_ratio * self.dim / 3)
        return (h + 7) // 8 * 8


# --------------------------------------------------------------------------------------------------
# fixed positional tables
# --------------------------------------------------------------------------------------------------


def sincos_1d(n: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """[n, dim]: sin on the first half of channels, cos on the second half."""
    assert dim % 2 == 0
    omega = 1.0 / temperature ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    ang = torch.arange(n, dtype=torch.float64)[:, None] * omega[None]  # [n, dim/2]
    return torch.cat([ang.sin(), ang.cos()], dim=1).float()


def sincos_3d(t: int, h: int, w: int, dim: int) -> torch.Tensor:
    """[t*h*w, dim] in row-major (t, h, w) order: dim/3 channels per axis."""
    d = dim // 3
    et, eh, ew = sincos_1d(t, d), sincos_1d(h, d), sincos_1d(w, d)
    grid = torch.cat([
        et[:, None, None, :].expand(t, h, w, d),
        eh[None, :, None, :].expand(t, h, w, d),
        ew[None, None, :, :].expand(t, h, w, d),
    ], dim=-1)  # [t, h, w, 3d]
    return grid.reshape(t * h * w, 3 * d)


def position_table(token_grid: tuple[int, ...], dim: int) -> torch.Tensor:
    if len(token_grid) == 1:
        return sincos_1d(token_grid[0], dim)
    if len(token_grid) == 3:
        return sincos_3d(*token_grid, dim)
    raise ValueError(f"token grid {token_grid}: only 1D and 3D grids are supported")


# --------------------------------------------------------------------------------------------------
# blocks
# --------------------------------------------------------------------------------------------------


class LayerNorm(nn.LayerNorm):
    def __init__(self, dim: int):
        super().__init__(dim, bias=False)


class Attention(nn.Module):
    """Multi-head attention; ``context=None`` is self-attention.

    mask: None (attend everywhere), bool [B, 1, Nq|1, Nk] (True = attend) or a FlexAttention BlockMask.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, mask, context: torch.Tensor | None = None) -> torch.Tensor:
        B, Nq, D = x.shape
        ctx = x if context is None else context
        Nk = ctx.shape[1]
        q = self.q(x).view(B, Nq, self.heads, D // self.heads).transpose(1, 2)  # [B, H, Nq, Dh]
        k, v = self.kv(ctx).view(B, Nk, 2, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # [B, H, Nk, Dh]
        if mask is None or isinstance(mask, torch.Tensor):
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, Nq, Dh]
        else:
            y = flex_attention(q, k, v, mask)
        return self.proj(y.transpose(1, 2).reshape(B, Nq, D))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, u = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(g) * u)


class EncoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.attn = LayerNorm(cfg.dim), Attention(cfg.dim, cfg.heads)
        self.norm2, self.mlp = LayerNorm(cfg.dim), SwiGLU(cfg.dim, cfg.mlp_hidden)

    def forward(self, x, mask):
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.self_attn = LayerNorm(cfg.dim), Attention(cfg.dim, cfg.heads)
        self.norm2, self.cross_attn = LayerNorm(cfg.dim), Attention(cfg.dim, cfg.heads)
        self.norm3, self.mlp = LayerNorm(cfg.dim), SwiGLU(cfg.dim, cfg.mlp_hidden)

    def forward(self, x, self_mask, context, cross_mask):
        x = x + self.self_attn(self.norm1(x), self_mask)
        x = x + self.cross_attn(self.norm2(x), cross_mask, context=context)
        return x + self.mlp(self.norm3(x))


# --------------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------------


def key_mask(valid: torch.Tensor) -> torch.Tensor:
    """bool [B, N] valid keys -> [B, 1, 1, N]; a sample with no valid key attends to its slot 0."""
    return attendable_keys(valid)[:, None, None, :]


def attendable_keys(valid: torch.Tensor) -> torch.Tensor:
    """bool [B, N]: the valid slots, and slot 0 of a sample that has none (its "empty context")."""
    empty = ~valid.any(dim=1, keepdim=True)  # [B, 1]
    first = torch.zeros_like(valid)
    first[:, 0] = True
    return valid | (empty & first)


def within_modality_mask(mod: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Decoder self-attention: query i sees key j iff same modality and j valid (and always itself). [B,1,N,N]."""
    same = mod[:, :, None] == mod[:, None, :]  # [B, N, N]
    m = same & valid[:, None, :]
    eye = torch.eye(mod.shape[1], dtype=torch.bool, device=mod.device)[None]
    return (m | eye)[:, None]


@dataclass
class AttentionMasks:
    """The three masks of one forward pass, each None (nothing masked), a bool tensor or a BlockMask."""

    encoder: object = None  # encoder self-attention [B, 1, 1, Ni]
    decoder: object = None  # decoder self-attention [B, 1, Nt, Nt]
    cross: object = None  # decoder -> encoder [B, 1, 1, Ni]


@torch.compiler.disable  # data-dependent choices; the blocks around it compile on their own
def attention_masks(impl: str, enc_valid: torch.Tensor | None = None, dec_mod: torch.Tensor | None = None,
                    dec_valid: torch.Tensor | None = None) -> AttentionMasks:
    """Masks for kernel ``impl`` ("sdpa" | "flex") from the slots' validity and the targets' modalities.

    Encoder and cross-attention see the attendable keys (:func:`attendable_keys`); decoder
    self-attention stays within a target's modality over valid keys (and always sees itself).
    sdpa: None where every key is attendable / every target is valid and of one modality, so the
    flash kernels run. flex: block masks over the same rules (blocks of pure padding or of other
    modalities are skipped by the kernel).
    """
    keys = attendable_keys(enc_valid) if enc_valid is not None else None
    if impl == "flex":
        return _flex_masks(keys, dec_mod, dec_valid)
    out = AttentionMasks()
    if keys is not None and not bool(keys.all()):
        out.encoder = out.cross = keys[:, None, None, :]
    if dec_mod is not None:
        one_modality = bool((dec_mod == dec_mod[:, :1]).all()) and bool(dec_valid.all())
        out.decoder = None if one_modality else within_modality_mask(dec_mod, dec_valid)
    return out


def _flex_masks(keys, dec_mod, dec_valid) -> AttentionMasks:
    out = AttentionMasks()
    if keys is not None:
        B, Ni = keys.shape

        def key_rule(b, h, q, kv):
            return keys[b, kv]

        out.encoder = _block_mask(key_rule, B, Ni, Ni, keys.device)
        if dec_mod is not None:
            out.cross = _block_mask(key_rule, B, dec_mod.shape[1], Ni, keys.device)
    if dec_mod is not None:
        B, Nt = dec_mod.shape

        def within_modality(b, h, q, kv):
            return ((dec_mod[b, q] == dec_mod[b, kv]) & dec_valid[b, kv]) | (q == kv)

        out.decoder = _block_mask(within_modality, B, Nt, Nt, dec_mod.device)
    return out


def _block_mask(rule, B: int, n_q: int, n_kv: int, device):
    from torch.nn.attention.flex_attention import create_block_mask

    # on CUDA the rule is evaluated block by block by a compiled kernel, never as a dense B x Nq x Nk grid
    return create_block_mask(rule, B, None, n_q, n_kv, device=device, _compile=torch.device(device).type == "cuda")


_FLEX = None


def flex_attention(q, k, v, block_mask):
    """FlexAttention with ``block_mask``, compiled once per process (eager FlexAttention is a slow reference)."""
    global _FLEX
    if _FLEX is None:
        from torch.nn.attention.flex_attention import flex_attention as fa

        _FLEX = torch.compile(fa)  # static shapes first; a second batch size compiles one dynamic kernel
    return _FLEX(q, k, v, block_mask=block_mask)


ATTENTION_IMPLS = ("auto", "sdpa", "flex")


# --------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------


class EgoM2P(nn.Module):
    def __init__(self, cfg: ModelConfig, registry: Registry, attention: str = "auto"):
        super().__init__()
        self.cfg = cfg
        self.registry = registry
        self.attention = attention  # attention kernel: auto | sdpa | flex (a runtime choice, not a weight)
        self.modalities: tuple[str, ...] = registry.names
        D = cfg.dim
        # per-modality token embeddings of the encoder; decoder embeddings double as output projections
        self.enc_embed = nn.ModuleDict({m: nn.Embedding(registry[m].vocab_size, D) for m in self.modalities})
        self.dec_embed = nn.ModuleDict({m: nn.Embedding(registry[m].vocab_size, D) for m in self.modalities})
        self.mod_embed = nn.Embedding(len(self.modalities), D)  # shared by encoder and decoder
        self.mask_token = nn.Parameter(torch.zeros(D))
        # fixed sin-cos positions of every modality, concatenated: pos_offset[m] + position -> row
        tables = [position_table(registry[m].token_grid, D) for m in self.modalities]
        offsets = torch.tensor([0] + [t.shape[0] for t in tables[:-1]]).cumsum(0)
        self.register_buffer("pos_table", torch.cat(tables) * cfg.pos_scale, persistent=False)  # [sum_m N_m, D]
        self.register_buffer("pos_offset", offsets, persistent=False)  # [M]
        self.encoder = nn.ModuleList([EncoderBlock(cfg) for _ in range(cfg.encoder_layers)])
        self.decoder = nn.ModuleList([DecoderBlock(cfg) for _ in range(cfg.decoder_layers)])
        self.enc_norm, self.dec_norm = LayerNorm(D), LayerNorm(D)
        self._init_weights()

    def _init_weights(self):
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                s = std
                if name.endswith("proj.weight") or name.endswith("down.weight"):  # residual outputs
                    s = std / math.sqrt(2 * (self.cfg.encoder_layers + self.cfg.decoder_layers))
                nn.init.normal_(p, 0.0, s)
        nn.init.normal_(self.mask_token, 0.0, std)

    def num_params(self, embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if not embeddings:
            n -= sum(p.numel() for m in (self.enc_embed, self.dec_embed) for p in m.parameters())
        return n

    def mod_index(self, name: str) -> int:
        return self.modalities.index(name)

    # ---- step 1: embed ---------------------------------------------------------------------------

    def _positions(self, mod: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return self.pos_table[self.pos_offset[mod.clamp(min=0)] + pos]  # [B, N, D]

    def embed_inputs(self, tok, mod, pos, valid) -> torch.Tensor:
        """token embedding (of its modality) + position + modality; zero on padding. -> [B, Ni, D]

        Every modality's table is looked up at every slot (ids clamped into its vocabulary) and kept
        where the slot holds that modality: no data-dependent shapes, and every table takes part in
        every step (a zero gradient when its modality is absent), as DDP without unused-parameter
        search and torch.compile want."""
        x = None
        for i, m in enumerate(self.modalities):
            emb = self.enc_embed[m]
            e = emb(tok.clamp(0, emb.num_embeddings - 1)) * (mod == i)[..., None]  # [B, Ni, D]
            x = e if x is None else x + e
        x = x + self._positions(mod, pos) + self.mod_embed(mod.clamp(min=0))
        return x * valid[..., None]

    def embed_targets(self, mod, pos, valid) -> torch.Tensor:
        """mask token + position + modality at the target slots. -> [B, Nt, D]"""
        x = self.mask_token + self._positions(mod, pos) + self.mod_embed(mod.clamp(min=0))
        return x * valid[..., None]

    # ---- step 2: encode --------------------------------------------------------------------------

    def attention_impl(self, device: torch.device) -> str:
        """The kernel this forward uses: ``attention`` with ``auto`` resolved. auto = flex for training on
        CUDA (fixed budget shapes: one compiled kernel per mask kind); sdpa in inference (generation
        changes shapes at every step, and its masks are mostly None) and on CPUs (FlexAttention has no
        backward pass on a CPU)."""
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"unknown attention kernel {self.attention!r}; choose one of {ATTENTION_IMPLS}")
        if self.attention == "auto":
            return "flex" if device.type == "cuda" and self.training else "sdpa"
        return self.attention

    def masks(self, enc_valid=None, dec_mod=None, dec_valid=None) -> AttentionMasks:
        device = (enc_valid if enc_valid is not None else dec_mod).device
        return attention_masks(self.attention_impl(device), enc_valid, dec_mod, dec_valid)

    def encode(self, x: torch.Tensor, valid: torch.Tensor, masks: AttentionMasks | None = None) -> torch.Tensor:
        """[B, Ni, D] -> [B, Ni, D] with full self-attention over valid input slots."""
        mask = (masks or self.masks(valid)).encoder
        for blk in self.encoder:
            x = blk(x, mask)
        return self.enc_norm(x)

    # ---- step 3: decode --------------------------------------------------------------------------

    def decode(self, y, dec_mod, dec_valid, context, enc_valid, masks: AttentionMasks | None = None) -> torch.Tensor:
        """[B, Nt, D] mask queries -> [B, Nt, D]; self-attention within modality, cross-attention to context."""
        masks = masks or self.masks(enc_valid, dec_mod, dec_valid)
        for blk in self.decoder:
            y = blk(y, masks.decoder, context, masks.cross)
        return self.dec_norm(y)

    # ---- step 4: logits --------------------------------------------------------------------------

    def logits(self, h: torch.Tensor, modality: str) -> torch.Tensor:
        """[..., D] decoder outputs -> [..., vocab_m] with the tied decoder embedding of ``modality``."""
        return h @ self.dec_embed[modality].weight.t()

    # ---- step 5: loss ----------------------------------------------------------------------------

    def loss_parts(self, h, dec_tok, dec_mod, dec_valid) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{modality: (sum of token cross-entropies, number of target tokens)} over this batch."""
        parts = {}
        for i, m in enumerate(self.modalities):
            sel = dec_valid & (dec_mod == i)  # [B, Nt]
            n = sel.sum()
            parts[m] = (self.cross_entropy(h[sel], dec_tok[sel], m), n)
        return parts

    def cross_entropy(self, h: torch.Tensor, labels: torch.Tensor, modality: str) -> torch.Tensor:
        """Sum of the cross-entropies of ``labels`` [n] under the logits of ``h`` [n, D] (tied head).

        Above :data:`LOGITS_CHUNK` logits (64000 codes x 260K video targets at base, batch 128 would be
        67 GB in fp32) the targets go in chunks whose logits are recomputed in the backward pass, so
        one chunk's logits are in memory at a time; below it, one product."""
        rows = max(1, LOGITS_CHUNK // self.registry[modality].vocab_size)
        if h.shape[0] <= rows:
            return F.cross_entropy(self.logits(h, modality).float(), labels, reduction="sum")
        w = self.dec_embed[modality].weight
        total = h.new_zeros((), dtype=torch.float32)
        for s in range(0, h.shape[0], rows):
            total = total + checkpoint(_chunk_cross_entropy, h[s:s + rows], w, labels[s:s + rows],
                                       use_reentrant=False)
        return total

    # ---- forward ---------------------------------------------------------------------------------

    def hidden(self, batch: dict) -> torch.Tensor:
        """embed -> encode -> decode: decoder outputs [B, Nt, D]."""
        masks = self.masks(batch["enc_valid"], batch["dec_mod"], batch["dec_valid"])
        x = self.embed_inputs(batch["enc_tok"], batch["enc_mod"], batch["enc_pos"], batch["enc_valid"])
        ctx = self.encode(x, batch["enc_valid"], masks)
        y = self.embed_targets(batch["dec_mod"], batch["dec_pos"], batch["dec_valid"])
        return self.decode(y, batch["dec_mod"], batch["dec_valid"], ctx, batch["enc_valid"], masks)

    def forward(self, batch: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """embed -> encode -> decode -> logits -> loss parts (see :func:`combine_losses`)."""
        h = self.hidden(batch)
        return self.loss_parts(h, batch["dec_tok"], batch["dec_mod"], batch["dec_valid"])

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Single-process convenience: (mean over present modalities of per-modality mean CE, {mod: CE})."""
        return combine_losses(self(batch))


LOGITS_CHUNK = 2**27  # logits per chunk of the output head's cross-entropy (512 MB in fp32)


def _chunk_cross_entropy(h: torch.Tensor, w: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy((h @ w.t()).float(), labels, reduction="sum")


def combine_losses(parts: dict, global_counts: dict | None = None, world_size: int = 1
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-modality mean CE averaged over the modalities with targets (paper's L_total).

    ``global_counts`` ({modality: target tokens over all ranks}) makes the per-rank loss a share of the
    global loss (times ``world_size``, since DDP averages gradients), so gradients and the summed loss
    equal a single process on the same global batch. A modality without targets adds its cross-entropy
    sum, exactly 0, so that its output embedding still takes part (with a zero gradient): DDP then
    needs no search for unused parameters.
    """
    counts = global_counts or {m: float(n) for m, (_, n) in parts.items()}
    present = [m for m in parts if counts[m] > 0]
    if not present:
        raise ValueError("batch has no target tokens")
    total = 0.0
    per_mod = {}
    for m, (ce, _) in parts.items():
        term = ce / counts[m] if m in present else ce  # ce == 0 here: a sum over no tokens
        total = total + term
        if m in present:
            per_mod[m] = term.detach()
    total = total * (world_size / len(present))
    return total, per_mod


def build_model(cfg: ModelConfig | dict, registry: Registry) -> EgoM2P:
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    return EgoM2P(cfg, registry)
