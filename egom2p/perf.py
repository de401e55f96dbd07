"""Performance accounting of the EgoM2P step: model FLOPs, device peaks, MFU, synthetic batches.

Imports nothing beyond torch and the model's config (the GPU checks run on machines without the
project's other dependencies).

**Model FLOPs** (the MFU numerator, as in PaLM's appendix B): 2 FLOPs per multiply-add of every
matrix product the model defines, forward pass; a training step is 3x forward (the backward pass
costs two forward passes; activation checkpointing's recomputation is not counted). Per sample with
``Ni`` input slots, ``Nt`` target slots, width ``D``, SwiGLU hidden ``H``:

* encoder, per layer: ``Ni * 2 * (4 D^2 + 3 D H)`` (q, kv, out projections; SwiGLU) + ``4 Ni^2 D``
  (scores and weighted values);
* decoder, per layer: ``Nt * 2 * (4 D^2 + 2 D^2 + 3 D H)`` (self-attention q, kv, out; cross-attention
  q, out; SwiGLU) + ``Ni * 2 * 2 D^2`` (cross-attention keys and values of the encoder output) +
  ``4 Nt^2 D`` (self-attention) + ``4 Nt Ni D`` (cross-attention);
* output head: ``2 D V_m`` per target token of modality ``m`` (tied embedding of its vocabulary).

Attention is counted as the dense ``N x N`` product (the decoder's within-modality rule and the
padding included), the usual convention; embedding lookups, norms and the loss are not counted.
Slots are counted whether they hold a token or padding: the model computes on all of them.
"""

from __future__ import annotations

import torch

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' data sheets; first match wins
# on torch.cuda.get_device_name().
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.0),
    ("H200 NVL", 835.0),
    ("H200", 989.0),  # SXM
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM (HBM3)
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("RTX 4090", 165.0),
    ("MI300X", 1307.0),
)


def peak_flops(device: torch.device | str, override_tflops: float | None = None) -> float | None:
    """Dense bf16 peak of ``device`` in FLOP/s (None when unknown, e.g. a CPU without ``override_tflops``)."""
    if override_tflops:
        return float(override_tflops) * 1e12
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in name:
            return tflops * 1e12
    return None


def forward_flops_per_sample(dim: int, mlp_hidden: int, encoder_layers: int, decoder_layers: int, n_in: int,
                             n_tgt: int) -> float:
    """Forward FLOPs of one sample through encoder and decoder (no output head), see the module docstring."""
    D, H, Ni, Nt = dim, mlp_hidden, n_in, n_tgt
    enc = Ni * 2 * (4 * D * D + 3 * D * H) + 4 * Ni * Ni * D
    dec = Nt * 2 * (6 * D * D + 3 * D * H) + Ni * 2 * 2 * D * D + 4 * Nt * Nt * D + 4 * Nt * Ni * D
    return float(encoder_layers * enc + decoder_layers * dec)


def step_flops(model_cfg, vocab_sizes: dict[str, int], batch: int, n_in: int, n_tgt: int,
               targets: dict[str, float]) -> float:
    """Model FLOPs of one training step (3 x forward) for ``batch`` samples of ``n_in`` + ``n_tgt`` slots.

    ``targets``: target tokens per modality in the step (the output head's cost depends on the vocabulary).
    """
    body = batch * forward_flops_per_sample(model_cfg.dim, model_cfg.mlp_hidden, model_cfg.encoder_layers,
                                            model_cfg.decoder_layers, n_in, n_tgt)
    head = sum(2.0 * model_cfg.dim * vocab_sizes[m] * float(n) for m, n in targets.items())
    return 3.0 * (body + head)


def mfu(flops_per_s: float, peak: float | None, world_size: int = 1) -> float | None:
    """Model FLOPs utilisation in [0, 1] (None without a known peak)."""
    if not peak:
        return None
    return flops_per_s / (peak * world_size)


def synthetic_batch(registry, batch: int, n_in: int, n_tgt: int, generator: torch.Generator | None = None,
                    alpha: float = 1.0, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """A batch in the sampler's layout (egom2p.model) without a token DB: per sample a Dirichlet split of
    the budgets over all modalities (capped by their token counts), disjoint random positions, random ids.
    For step benchmarks on machines that have only torch."""
    names = list(registry.names)
    n_tok = torch.tensor([registry[m].num_tokens for m in names], dtype=torch.float64)
    if n_in + n_tgt > int(n_tok.sum()):
        raise ValueError(f"budgets {n_in}+{n_tgt} exceed the {int(n_tok.sum())} tokens of a clip")
    g = generator or torch.Generator().manual_seed(0)
    out = {k: torch.zeros(batch, n, dtype=torch.long) for k, n in
           (("enc_tok", n_in), ("enc_mod", n_in), ("enc_pos", n_in), ("dec_tok", n_tgt), ("dec_mod", n_tgt),
            ("dec_pos", n_tgt))}
    out["enc_valid"] = torch.zeros(batch, n_in, dtype=torch.bool)
    out["dec_valid"] = torch.zeros(batch, n_tgt, dtype=torch.bool)
    alphas = torch.full((len(names),), float(alpha), dtype=torch.float64)
    for b in range(batch):
        cap = n_tok.clone()
        counts = []
        for budget in (n_in, n_tgt):
            p = torch._standard_gamma(alphas, generator=g)  # Dirichlet = normalised Gamma draws
            p = p / p.sum() if p.sum() > 0 else torch.full_like(p, 1 / len(p))
            c = torch.minimum(torch.floor(p * budget), cap)
            while c.sum() < budget:  # hand the rest to modalities with room, largest room first
                room = cap - c
                c[int(room.argmax())] += min(budget - c.sum(), room.max())
            cap -= c
            counts.append(c.long())
        i = t = 0
        for k, m in enumerate(names):
            perm = torch.randperm(registry[m].num_tokens, generator=g)
            ni, nt = int(counts[0][k]), int(counts[1][k])
            for (slot, n, pos), pre in (((i, ni, perm[:ni]), "enc"), ((t, nt, perm[ni:ni + nt]), "dec")):
                out[f"{pre}_tok"][b, slot:slot + n] = torch.randint(0, registry[m].vocab_size, (n,), generator=g)
                out[f"{pre}_mod"][b, slot:slot + n] = k
                out[f"{pre}_pos"][b, slot:slot + n] = pos.sort().values
                out[f"{pre}_valid"][b, slot:slot + n] = True
            i, t = i + ni, t + nt
    return {k: v.to(device) for k, v in out.items()}
