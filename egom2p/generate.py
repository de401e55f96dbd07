"""Multi-step parallel decoding of any target modalities from any conditioning modalities.

``generate(model, cond, targets, config)`` fills every token of each target modality in ``steps``
forward passes (target modalities one after the other; each finished one joins the conditioning of
the next, as in 4M's chained generation). Per step:

* **schedule** ``roar`` (paper, 4M): a random order of the target positions is drawn once; step ``s``
  predicts only its next ``k_s`` positions. ``maskgit``: every still-masked position is predicted and
  the ``k_s`` most confident samples (probability of the sampled token) are kept.
* **step schedule** ``linear`` (paper: n/s tokens per step) or ``cosine`` (MaskGIT: after step s a
  fraction cos(pi/2 * s/S) of the tokens is still masked: few tokens first, many at the end).
* **classifier-free guidance** in the paper's convention on logits
  ``l = (1 + w) * l_cond - w * l_uncond`` where the unconditional pass drops every conditioning
  modality (only the target's already decoded tokens stay visible; with none the encoder is the empty
  context). This equals guidance *scale* ``1 + w`` in the other common convention
  ``l_uncond + s * (l_cond - l_uncond)``; ``w = 0`` switches guidance (and its second pass) off.
* **sampling**: temperature, then top-k, then nucleus (top-p) filtering, then a draw from
  ``generator``. The official settings are the presets in :data:`PRESETS` (temperature 0.01,
  top-p 0.8, w = 1; steps cam 3, depth 3, gaze 5, depth->RGB 6).

Conditioning tokens are never modified and are returned untouched; outputs are in [0, vocab_m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .model import EgoM2P


@dataclass(frozen=True)
class GenerationConfig:
    steps: int | dict = 1  # decoding steps per target (an int, or {modality: steps})
    schedule: str = "roar"  # roar | maskgit
    step_schedule: str = "linear"  # linear | cosine
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    guidance: float = 0.0  # w in (1 + w) * cond - w * uncond; 0 = off

    def steps_for(self, modality: str) -> int:
        s = self.steps.get(modality, 1) if isinstance(self.steps, dict) else self.steps
        return max(1, int(s))


_OFFICIAL = dict(schedule="roar", step_schedule="linear", temperature=0.01, top_p=0.8, guidance=1.0)
PRESETS: dict[str, GenerationConfig] = {
    "camera": GenerationConfig(steps=3, **_OFFICIAL),
    "depth": GenerationConfig(steps=3, **_OFFICIAL),
    "gaze": GenerationConfig(steps=5, **_OFFICIAL),
    "rgb_from_depth": GenerationConfig(steps=6, **_OFFICIAL),
}


def preset_for(modality_name: str) -> GenerationConfig:
    """The default preset that generates a modality (its registry entry's ``preset``)."""
    from .modality import info

    return get_preset(info(modality_name).preset)


def get_preset(name: str) -> GenerationConfig:
    """The named official preset ("camera", "gaze", "depth", "rgb_from_depth")."""
    if name not in PRESETS:
        raise KeyError(f"unknown generation preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]


def get_config(config: GenerationConfig | str | None, **overrides) -> GenerationConfig:
    if config is None:
        cfg = GenerationConfig()
    elif isinstance(config, str):
        cfg = get_preset(config)
    else:
        cfg = config
    if cfg.schedule not in ("roar", "maskgit"):
        raise ValueError(f"unknown decoding schedule {cfg.schedule!r} (roar | maskgit)")
    if cfg.step_schedule not in ("linear", "cosine"):
        raise ValueError(f"unknown step schedule {cfg.step_schedule!r} (linear | cosine)")
    return replace(cfg, **overrides) if overrides else cfg


def tokens_per_step(n: int, steps: int, kind: str = "linear") -> list[int]:
    """How many of ``n`` tokens each of ``steps`` steps decodes (sums to n, each >= 1 when n >= steps)."""
    steps = max(1, min(steps, n))
    if kind == "linear":
        done = [round(n * (s + 1) / steps) for s in range(steps)]
    elif kind == "cosine":
        done = [n - math.floor(n * math.cos(math.pi / 2 * (s + 1) / steps)) for s in range(steps)]
    else:
        raise ValueError(f"unknown step schedule {kind!r}")
    done[-1] = n
    out, prev = [], 0
    for s, d in enumerate(done):
        d = max(d, prev + 1)  # at least one token per step
        d = min(d, n - (steps - 1 - s))  # leave one for each later step
        out.append(d - prev)
        prev = d
    return out


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """[..., V] -> logits with temperature applied and everything outside top-k / the nucleus at -inf."""
    logits = logits.float() / max(float(temperature), 1e-6)
    if top_k and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_l, idx = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_l.softmax(-1)
        cum = probs.cumsum(-1)
        drop = cum - probs > top_p  # keep the smallest prefix whose mass reaches top_p (the top token always)
        sorted_l = sorted_l.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_l)
    return logits


def sample_logits(logits: torch.Tensor, cfg: GenerationConfig, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, n, V] -> (tokens [B, n], probability of each sampled token [B, n])."""
    probs = filter_logits(logits, cfg.temperature, cfg.top_k, cfg.top_p).softmax(-1)
    flat = probs.reshape(-1, probs.shape[-1])
    tok = torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])
    return tok, probs.gather(-1, tok[..., None]).squeeze(-1)


# --------------------------------------------------------------------------------------------------
# batching helpers
# --------------------------------------------------------------------------------------------------


def _encoder_inputs(model: EgoM2P, visible: list[tuple[str, torch.Tensor, torch.Tensor]], B: int, device):
    """visible: [(modality, tokens [B, n], positions [B, n])] -> padded enc_* tensors of the model."""
    if not visible:
        z = torch.zeros(B, 1, dtype=torch.long, device=device)
        return z, z, z, torch.zeros(B, 1, dtype=torch.bool, device=device)
    tok = torch.cat([t for _, t, _ in visible], 1)
    pos = torch.cat([p for _, _, p in visible], 1)
    mod = torch.cat([torch.full_like(t, model.mod_index(m)) for m, t, _ in visible], 1)
    return tok, mod, pos, torch.ones_like(tok, dtype=torch.bool)


def _pad_cat(a: tuple, b: tuple) -> tuple:
    """Concatenate two enc_* tuples along the batch, padding the shorter one."""
    n = max(a[0].shape[1], b[0].shape[1])

    def pad(x, fill):
        return torch.nn.functional.pad(x, (0, n - x.shape[1]), value=fill)

    return tuple(torch.cat([pad(x, False if x.dtype == torch.bool else 0), pad(y, False if y.dtype == torch.bool
                                                                                else 0)], 0) for x, y in zip(a, b))


@torch.no_grad()
def _target_logits(model: EgoM2P, enc: tuple, modality: str, query_pos: torch.Tensor) -> torch.Tensor:
    """Logits [B, n, V] of ``modality`` at ``query_pos`` [B, n] given encoder inputs ``enc``."""
    tok, mod, pos, valid = enc
    x = model.embed_inputs(tok, mod, pos, valid)
    ctx = model.encode(x, valid)
    dmod = torch.full_like(query_pos, model.mod_index(modality))
    dvalid = torch.ones_like(query_pos, dtype=torch.bool)
    y = model.embed_targets(dmod, query_pos, dvalid)
    h = model.decode(y, dmod, dvalid, ctx, valid)
    return model.logits(h, modality).float()


def _guided_logits(model: EgoM2P, visible: list, prev: list, tgt: str, query: torch.Tensor, guidance: float, B: int,
                   device) -> torch.Tensor:
    """Logits [B, n, V] of ``tgt`` at ``query`` given ``visible`` + ``prev`` (the target's decoded tokens), with
    classifier-free guidance ``w``: the unconditional pass sees only ``prev``."""
    enc_c = _encoder_inputs(model, visible + prev, B, device)
    if not guidance:
        return _target_logits(model, enc_c, tgt, query)
    both = _target_logits(model, _pad_cat(enc_c, _encoder_inputs(model, prev, B, device)), tgt,
                          torch.cat([query, query], 0))
    return (1.0 + guidance) * both[:B] - guidance * both[B:]


# --------------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------------


def _conditioning(model: EgoM2P, cond: dict[str, torch.Tensor], targets: list[str]):
    """Check ``cond`` against the model and ``targets``; returns (batch size, visible inputs, device)."""
    device = next(model.parameters()).device
    reg = model.registry
    for m in list(cond) + targets:
        if m not in model.modalities:
            raise KeyError(f"unknown modality {m!r}; the model has {list(model.modalities)}")
    overlap = set(cond) & set(targets)
    if overlap:
        raise ValueError(f"modalities {sorted(overlap)} are both conditioning and targets")
    if not cond:
        raise ValueError("generate needs at least one conditioning modality (cond={...})")
    B = next(iter(cond.values())).shape[0]
    visible: list[tuple[str, torch.Tensor, torch.Tensor]] = []
    for m, t in cond.items():
        n = reg[m].num_tokens
        if t.shape != (B, n):
            raise ValueError(f"cond[{m!r}] has shape {tuple(t.shape)}, expected ({B}, {n})")
        if t.min() < 0 or t.max() >= reg[m].vocab_size:
            raise ValueError(f"cond[{m!r}] has token ids outside [0, {reg[m].vocab_size})")
        pos = torch.arange(n, device=device).expand(B, n)
        visible.append((m, t.to(device).long(), pos))
    return B, visible, device


@torch.no_grad()
def generate(model: EgoM2P, cond: dict[str, torch.Tensor], targets: list[str] | str,
             config: GenerationConfig | str | None = None, generator: torch.Generator | None = None
             ) -> dict[str, torch.Tensor]:
    """Decode ``targets`` from ``cond`` ({modality: LongTensor [B, num_tokens]}); returns {target: [B, num_tokens]}.

    ``config``: a :class:`GenerationConfig` or a preset name ("camera", "gaze", "depth",
    "rgb_from_depth"). ``generator``: a torch.Generator on the model's device for reproducible draws.
    """
    cfg = get_config(config)
    targets = [targets] if isinstance(targets, str) else list(targets)
    B, visible, device = _conditioning(model, cond, targets)
    reg = model.registry
    was_training = model.training
    model.eval()
    out: dict[str, torch.Tensor] = {}
    for tgt in targets:
        out[tgt] = _decode_one(model, visible, tgt, cfg, B, device, generator)
        visible.append((tgt, out[tgt], torch.arange(reg[tgt].num_tokens, device=device).expand(B, -1)))
    model.train(was_training)
    return out


@torch.no_grad()
def target_distribution(model: EgoM2P, cond: dict[str, torch.Tensor], target: str, guidance: float = 0.0
                        ) -> torch.Tensor:
    """The model's distribution over the codes of every ``target`` token given ``cond``, all tokens queried
    at once in one pass (with ``guidance`` w as in :func:`generate`): float [B, num_tokens, vocab]. Each
    token's marginal given the conditioning, which the expected-code decode of a tokenizer turns into a point
    estimate (``TaskRunner.expectation``)."""
    B, visible, device = _conditioning(model, cond, [target])
    n = model.registry[target].num_tokens
    query = torch.arange(n, device=device).expand(B, n)
    was_training = model.training
    model.eval()
    probs = _guided_logits(model, visible, [], target, query, guidance, B, device).softmax(-1)
    model.train(was_training)
    return probs


@torch.no_grad()
def token_nll(model: EgoM2P, cond: dict[str, torch.Tensor], target: str, tokens: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative log-likelihood (nats per token, float [B]) of the ``target`` tokens [B, num_tokens] under the
    one-pass distribution given ``cond``, and given no input at all (the unconditional pass of guidance:
    the prior the model learnt). Their difference is what the inputs are worth to the model: about 0 for a
    model that ignores them, however low its loss."""
    B, visible, device = _conditioning(model, cond, [target])
    n = model.registry[target].num_tokens
    if tokens.shape != (B, n):
        raise ValueError(f"{target} tokens have shape {tuple(tokens.shape)}, expected ({B}, {n})")
    query = torch.arange(n, device=device).expand(B, n)
    labels = tokens.to(device).long()[..., None]
    was_training = model.training
    model.eval()
    nll = [-_guided_logits(model, seen, [], target, query, 0.0, B, device).log_softmax(-1).gather(-1, labels)
           .squeeze(-1).mean(1) for seen in (visible, [])]
    model.train(was_training)
    return nll[0], nll[1]


def _decode_one(model, visible, tgt, cfg, B, device, generator) -> torch.Tensor:
    n = model.registry[tgt].num_tokens
    counts = tokens_per_step(n, cfg.steps_for(tgt), cfg.step_schedule)
    tokens = torch.zeros(B, n, dtype=torch.long, device=device)
    decided = torch.zeros(B, n, dtype=torch.bool, device=device)
    order = torch.argsort(torch.rand(B, n, device=device, generator=generator), dim=1)  # ROAR order
    done = 0
    for k in counts:
        # positions decoded so far join the encoder inputs of both passes
        if done:
            dpos = decided.nonzero()[:, 1].view(B, done)  # same count in every row
            dtok = tokens.gather(1, dpos)
            prev = [(tgt, dtok, dpos)]
        else:
            prev = []
        if cfg.schedule == "roar":
            query = order[:, done:done + k]  # [B, k]
        else:  # maskgit: query every masked position
            query = (~decided).nonzero()[:, 1].view(B, n - done)
        logits = _guided_logits(model, visible, prev, tgt, query, cfg.guidance, B, device)
        tok, conf = sample_logits(logits, cfg, generator)
        if cfg.schedule == "maskgit":
            keep = torch.topk(conf, k, dim=1).indices  # the k most confident of the masked positions
            query, tok = query.gather(1, keep), tok.gather(1, keep)
        tokens.scatter_(1, query, tok)
        decided.scatter_(1, query, True)
        done += k
    return tokens
