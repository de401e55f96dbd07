"""Training throughput on CPU, each number beside a baseline measured in the same run.

1. **The model's step vs a stock ``torch.nn.Transformer``** of the same size: width 240, 4 + 4 layers,
   the same FFN parameters (SwiGLU 640 hidden x 3 matrices = ReLU 960 hidden x 2), the same token
   counts (256 input + 256 target slots, batch 16, batches from the real masking sampler), embeddings
   and output heads on both sides (the stock model: one table over the concatenated vocabularies in,
   a full-vocabulary linear head out), the same AdamW (egom2p.train.make_optimizer), the same threads.
   Steps alternate between the two (so machine load hits both alike); per-step ms are medians.
   Ratio = model tokens/s / stock tokens/s (target >= 2x). Both in fp32 and, with ``--bf16``, both under
   bf16 autocast (CPUs with AMX / AVX-512 BF16).
2. **The tiny model** (the demo's config) tokens/s and the masking sampler's samples/s alone; the sampler
   must produce >= 10x what the model consumes.
3. **The sampler at scale**: samples/s from token DBs of 10K, 100K and 1M synthetic rows (gaze and cam
   tokens, so that a million rows stay small on disk); flat within 1.5x is the target.

    python benchmarks/bench_train.py [--threads 2] [--steps 6] [--bf16] [--profile] [--skip-scale]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from egom2p.model import EgoM2P, ModelConfig, attendable_keys, position_table  # noqa: E402
from egom2p.sampler import MaskingSampler  # noqa: E402
from egom2p.train import autocast, compose_config, make_optimizer, train_step  # noqa: E402
from train_factories import make_token_db  # noqa: E402

WIDTH, LAYERS, HEADS, BUDGET, BATCH = 240, 4, 4, 256, 16


class StockSeq2Seq(nn.Module):
    """``torch.nn.Transformer`` (pre-norm, no biases, no dropout) with embeddings and an output head.

    Inputs: one embedding table over the concatenated vocabularies + the same fixed sin-cos positions;
    decoder queries: a per-modality learned vector + position (the model's mask token + modality
    embedding); output: one linear head over the concatenated vocabularies; padding as key masks."""

    def __init__(self, registry, dim: int, layers: int, heads: int, ffn: int):
        super().__init__()
        names = registry.names
        vocab = [registry[m].vocab_size for m in names]
        tables = [position_table(registry[m].token_grid, dim) for m in names]
        self.register_buffer("voff", torch.tensor([0] + vocab[:-1]).cumsum(0), persistent=False)
        self.register_buffer("pos_table", torch.cat(tables), persistent=False)
        self.register_buffer("poff", torch.tensor([0] + [t.shape[0] for t in tables[:-1]]).cumsum(0),
                             persistent=False)
        self.src_embed = nn.Embedding(sum(vocab), dim)
        self.query = nn.Embedding(len(names), dim)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "enable_nested_tensor is True, but ... norm_first"
            self.tf = nn.Transformer(dim, heads, layers, layers, ffn, dropout=0.0, batch_first=True,
                                     norm_first=True, bias=False)
        self.head = nn.Linear(dim, sum(vocab), bias=False)

    def forward(self, b: dict) -> torch.Tensor:
        src = self.src_embed(self.voff[b["enc_mod"]] + b["enc_tok"]) + self.pos_table[self.poff[b["enc_mod"]]
                                                                                       + b["enc_pos"]]
        tgt = self.query(b["dec_mod"]) + self.pos_table[self.poff[b["dec_mod"]] + b["dec_pos"]]
        keys = ~attendable_keys(b["enc_valid"])  # an empty input attends to its slot 0, as in the model
        h = self.tf(src, tgt, src_key_padding_mask=keys, memory_key_padding_mask=keys,
                    tgt_key_padding_mask=~b["dec_valid"])
        labels = (self.voff[b["dec_mod"]] + b["dec_tok"])[b["dec_valid"]]
        return nn.functional.cross_entropy(self.head(h[b["dec_valid"]]).float(), labels)


def make_step(module: nn.Module, ocfg, bf16: bool):
    """One training step of ``module``: the model's own (egom2p.train.train_step), or for the stock
    module the same sequence (autocast forward, backward, clip at 1.0, the same AdamW)."""
    opt = make_optimizer(module, ocfg)
    amp = autocast(torch.device("cpu"), "bf16" if bf16 else "fp32")
    if isinstance(module, EgoM2P):
        return lambda b: float(train_step(module, module, opt, b, amp, 1.0)[0].detach())

    def step(b):
        with amp:
            loss = module(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    return step


def alternate(steps: dict, batches: list, n: int) -> dict[str, list[float]]:
    """Seconds per step of each entry of ``steps``, taking turns step by step (one warm-up step each)."""
    for f in steps.values():
        f(batches[0])
    times = {k: [] for k in steps}
    for i in range(n):
        for k, f in steps.items():
            t = time.perf_counter()
            f(batches[(i + 1) % len(batches)])
            times[k].append(time.perf_counter() - t)
    return times


def model_vs_stock(db: str, args) -> None:
    cfg = compose_config(["model=tiny"])
    s = MaskingSampler(db, {"input_budget": BUDGET, "target_budget": BUDGET}, seed=0, batch_size=BATCH)
    batches = [{k: v for k, v in s.batch(b).items() if k != "row"} for b in range(4)]
    tokens = BATCH * 2 * BUDGET  # slots per step, the same for both
    torch.manual_seed(0)
    model = EgoM2P(ModelConfig(dim=WIDTH, encoder_layers=LAYERS, decoder_layers=LAYERS, heads=HEADS,
                               registry="tiny"), s.registry)
    mcfg = model.cfg
    stock = StockSeq2Seq(s.registry, WIDTH, LAYERS, HEADS, ffn=3 * mcfg.mlp_hidden // 2)
    n_model, n_stock = model.num_params(), sum(p.numel() for p in stock.parameters())
    print(f"model vs stock nn.Transformer: width {WIDTH}, {LAYERS}+{LAYERS} layers, {HEADS} heads, FFN SwiGLU "
          f"{mcfg.mlp_hidden} vs ReLU {3 * mcfg.mlp_hidden // 2}; {n_model / 1e6:.2f}M vs {n_stock / 1e6:.2f}M "
          f"parameters; {BUDGET}+{BUDGET} slots x batch {BATCH} = {tokens} tokens/step; "
          f"{torch.get_num_threads()} threads")
    for bf16 in ([False, True] if args.bf16 else [False]):
        steps = {"model": make_step(model, cfg.optim, bf16), "stock": make_step(stock, cfg.optim, bf16)}
        times = alternate(steps, batches, args.steps)
        ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
        ratio = ms["stock"] / ms["model"]
        prec = "bf16 autocast" if bf16 else "fp32"
        for k in ("model", "stock"):
            print(f"  {prec:13s} {k:5s}: {ms[k]:8.1f} ms/step  {tokens / ms[k] * 1000:9,.0f} tokens/s  "
                  f"(steps: {', '.join(f'{1000 * x:.0f}' for x in times[k])} ms)")
        print(f"  {prec:13s} ratio model / stock (tokens/s) = {ratio:.2f}x  "
              f"[{'OK' if ratio >= 2 else 'BELOW'} the 2x target]")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name, f in (("model", make_step(model, cfg.optim, False)), ("stock", make_step(stock, cfg.optim, False))):
            f(batches[0])
            with profile(activities=[ProfilerActivity.CPU]) as p:
                f(batches[1])
            print(f"\nprofile of one {name} step (fp32), by self CPU time:")
            print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))


def sampler_rate(db: str, budgets: tuple[int, int], batch: int, n_batches: int, modalities=None) -> float:
    mix = {"input_budget": budgets[0], "target_budget": budgets[1]}
    if modalities:
        mix["modalities"] = list(modalities)
    s = MaskingSampler(db, mix, seed=0, batch_size=batch)
    s.batch(0)
    t = time.perf_counter()
    for b in range(1, n_batches + 1):
        s.batch(b)
    return n_batches * batch / (time.perf_counter() - t)


def tiny_model_and_sampler(db: str, steps: int, batch: int) -> None:
    cfg = compose_config(["model=tiny"])
    budgets = (int(cfg.data.input_budget), int(cfg.data.target_budget))
    s = MaskingSampler(db, {"input_budget": budgets[0], "target_budget": budgets[1]}, seed=0, batch_size=batch)
    batches = [{k: v for k, v in s.batch(b).items() if k != "row"} for b in range(4)]
    torch.manual_seed(0)
    model = EgoM2P(ModelConfig.from_dict(dict(cfg.model)), s.registry)
    step = make_step(model, cfg.optim, False)
    times = alternate({"tiny": step}, batches, steps)["tiny"]
    dt = statistics.median(times)
    tok_s, samples_s = batch * sum(budgets) / dt, batch / dt
    samp_s = sampler_rate(db, budgets, batch, 40)
    print(f"tiny model ({model.num_params() / 1e6:.2f}M params, batch {batch}, budgets {budgets[0]}+{budgets[1]}, "
          f"{torch.get_num_threads()} threads): {tok_s:,.0f} tokens/s = {samples_s:,.1f} samples/s "
          f"({1000 * dt:.1f} ms/step, median)")
    ratio = samp_s / samples_s
    print(f"sampler alone, tiny registry: {samp_s:,.0f} samples/s (one process); ratio sampler / model consumption "
          f"(baseline) = {ratio:.1f}x  [{'OK' if ratio >= 10 else 'BELOW'} the 10x target]")


def scale_db(path: Path, rows: int, seed: int = 0) -> str:
    """A token DB of ``rows`` synthetic rows (gaze + cam tokens, rgb/depth null) written in one go with Arrow."""
    import numpy as np
    import pyarrow as pa

    from egom2p.modalities import get_registry
    from egom2p.tokendb import token_column, token_schema, write_tokens

    reg = get_registry("tiny")
    schema = token_schema(reg)
    rng = np.random.default_rng(seed)
    ds = np.where(rng.random(rows) < 0.8, "egogen", "hot3d")
    cols = {"clip_id": pa.array([f"{d}/s{i // 30}/{i:07d}" for i, d in enumerate(ds)]), "dataset": pa.array(ds),
            "sequence": pa.array([f"s{i // 30}" for i in range(rows)]), "split": pa.array(["train"] * rows)}
    for m in reg.names:
        f = schema.field(token_column(m))
        n = reg[m].num_tokens
        if m in ("gaze", "cam"):
            vals = pa.array(rng.integers(0, reg[m].vocab_size, rows * n).astype(np.uint16))
            cols[f.name] = pa.FixedSizeListArray.from_arrays(vals, n)
        else:
            cols[f.name] = pa.nulls(rows, f.type)
    write_tokens(path, pa.table(cols), registry=reg, tokenizers={m: {"kind": "synthetic", "sha256": "0" * 64}
                                                                 for m in ("gaze", "cam")})
    return str(path)


def sampler_at_scale(d: Path, sizes=(10_000, 100_000, 1_000_000)) -> None:
    rates = {}
    for n in sizes:
        t = time.perf_counter()
        db = scale_db(d / f"scale_{n}.lance", n)
        t_write = time.perf_counter() - t
        t = time.perf_counter()
        MaskingSampler(db, {"input_budget": 30, "target_budget": 30, "modalities": ["gaze", "cam"]}, batch_size=16)
        t_init = time.perf_counter() - t
        rates[n] = max(sampler_rate(db, (30, 30), 16, 40, ("gaze", "cam")) for _ in range(2))
        print(f"sampler at {n:>9,} rows: {rates[n]:8,.0f} samples/s (batch 16, budgets 30+30, best of 2); "
              f"start-up {t_init:.2f} s; DB written in {t_write:.1f} s")
    spread = max(rates.values()) / min(rates.values())
    print(f"sampler flatness, fastest / slowest over {len(sizes)} sizes (baseline: the 10K-row DB) = {spread:.2f}x  "
          f"[{'OK' if spread <= 1.5 else 'ABOVE'} the 1.5x target]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per side (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads for both sides")
    ap.add_argument("--bf16", action="store_true", help="also compare both under bf16 autocast")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of one step of each")
    ap.add_argument("--skip-scale", action="store_true", help="skip the 10K/100K/1M-row sampler part")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        db = make_token_db(Path(d) / "tiny.lance", parts=(("egogen", 192, ("rgb", "depth", "gaze", "cam")),
                                                          ("hot3d", 64, ("rgb", "cam"))))
        model_vs_stock(db, args)
        tiny_model_and_sampler(db, steps=max(args.steps, 10), batch=16)
        base_db = make_token_db(Path(d) / "base.lance", registry="base",
                                parts=(("egogen", 48, ("rgb", "depth", "gaze", "cam")), ("hot3d", 16, ("rgb", "cam"))))
        print(f"sampler alone, base registry (5120-token videos, budgets 2048+2048): "
              f"{sampler_rate(base_db, (2048, 2048), 16, 8):,.0f} samples/s per process (DataLoader workers "
              "multiply it)")
        if not args.skip_scale:
            sampler_at_scale(Path(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
