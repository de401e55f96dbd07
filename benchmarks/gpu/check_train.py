"""GPU check of training the base model: step time, tokens/s, MFU and peak memory at batch 8, 32 and 128.

    python benchmarks/gpu/check_train.py                 # one H100/H200, bf16 (about 4 minutes)
    python benchmarks/gpu/check_train.py --smoke         # tiny sizes on the CPU (what the tests run)

Needs nothing beyond torch: batches are synthetic (egom2p.perf.synthetic_batch: the sampler's layout,
a Dirichlet split of the 2048 + 2048 budgets over the modalities of the base registry) and the step is
the trainer's own (egom2p.train.train_step: bf16 autocast, fused AdamW, TF32, FlexAttention block
masks, clipping). Measured, one JSON line each ({"check", "metric", "value", "unit", ...}):

* attention kernels side by side at the smallest batch: ``flex`` (block masks) vs ``sdpa`` (dense
  boolean masks where needed) -- the measurement behind ``train.attention=auto``;
* for each batch: step time, tokens/s (input + target slots), model TFLOP/s and MFU against the
  device's dense bf16 peak (egom2p.perf), peak memory. Batches of 64 and more run with activation
  checkpointing (a smaller batch that runs out of memory is retried with it); ``--compile`` compiles
  the whole model as ``train.compile`` does.

A time budget (``--budget-s``) skips what would not finish; skipped entries are reported as such.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from egom2p.modalities import get_registry  # noqa: E402
from egom2p.model import EgoM2P, ModelConfig  # noqa: E402
from egom2p.perf import mfu, peak_flops, step_flops, synthetic_batch  # noqa: E402
from egom2p.train import autocast, make_optimizer, parallelize, train_step  # noqa: E402

OPTIM = SimpleNamespace(lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05, fused=None)


def emit(check: str, metric: str, value, unit: str, **extra):
    v = round(float(value), 6) if isinstance(value, (int, float)) else value
    print(json.dumps({"check": check, "metric": metric, "value": v, "unit": unit, **extra}), flush=True)


def run_config(args, registry, mcfg, budgets, batch: int, attention: str, checkpointing: bool, device, peak,
               steps: int, warmup: int) -> dict:
    """Build a fresh model + optimizer, warm up, time ``steps`` steps. -> {step_s, tokens_s, tflops, mfu, mem}."""
    torch.manual_seed(0)
    model = EgoM2P(mcfg, registry, attention=attention).to(device).train()
    tcfg = SimpleNamespace(activation_checkpointing=checkpointing, compile=args.compile, parallel="ddp")
    step_model = parallelize(model, tcfg, 1, device)
    opt = make_optimizer(model, OPTIM, device)
    amp = autocast(device, "bf16" if device.type == "cuda" else "fp32")
    g = torch.Generator().manual_seed(batch)
    batches = [synthetic_batch(registry, batch, *budgets, generator=g, device=device) for _ in range(2)]
    vocab = {m: registry[m].vocab_size for m in model.modalities}
    for i in range(warmup):
        train_step(step_model, model, opt, batches[i % 2], amp, 1.0)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    flops = 0.0
    t = time.perf_counter()
    for i in range(steps):
        b = batches[i % 2]
        _, _, counts, _ = train_step(step_model, model, opt, b, amp, 1.0)
        flops += step_flops(mcfg, vocab, batch, *budgets, counts)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    out = {"step_s": dt, "tokens_s": batch * sum(budgets) / dt, "tflops": flops / steps / dt / 1e12,
           "mfu": mfu(flops / steps / dt, peak), "mem": None}
    if device.type == "cuda":
        out["mem"] = torch.cuda.max_memory_allocated() / 2**30
    del model, opt, step_model, batches
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny model and registry on the CPU")
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32, 128], help="per-GPU batches (samples)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="torch.compile the whole model (train.compile)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="MFU denominator (default: the known peak)")
    ap.add_argument("--budget-s", type=float, default=300.0, help="skip what would not finish within this")
    args = ap.parse_args()
    t_start = time.perf_counter()

    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if not args.smoke and device.type != "cuda":
        print("no CUDA device: run with --smoke on CPU", file=sys.stderr)
        return 2
    if args.smoke:
        registry = get_registry("tiny")
        mcfg, budgets = ModelConfig(dim=96, encoder_layers=2, decoder_layers=2, heads=4, registry="tiny"), (64, 64)
        args.batches, args.steps, args.warmup = [2, 4], 2, 1
        kernels = ["sdpa"]  # FlexAttention has no backward pass on a CPU
    else:
        registry, mcfg, budgets = get_registry("base"), ModelConfig(), (2048, 2048)
        kernels = ["flex", "sdpa"]
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    check = "train_base" if not args.smoke else "train_smoke"
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = peak_flops(device, args.peak_tflops)
    with torch.device("meta"):
        n_params = EgoM2P(mcfg, registry).num_params()
    emit(check, "params", n_params / 1e6, "M", device=name, peak_tflops=peak / 1e12 if peak else None)

    def remaining() -> float:
        return args.budget_s - (time.perf_counter() - t_start)

    # 1. the attention kernels side by side at the smallest batch
    small = min(args.batches)
    results = {}
    for kernel in kernels:
        r = run_config(args, registry, mcfg, budgets, small, kernel, False, device, peak, args.steps, args.warmup)
        results[kernel] = r
        emit(check, f"attention_{kernel}_step_time", r["step_s"], "s", batch=small)
        emit(check, f"attention_{kernel}_tokens_per_s", r["tokens_s"], "tokens/s", batch=small)
    best = min(results, key=lambda k: results[k]["step_s"])
    if len(results) > 1:
        emit(check, "attention_flex_speedup_vs_sdpa", results["sdpa"]["step_s"] / results["flex"]["step_s"], "x",
             batch=small)
    # 2. each batch with the faster kernel (batch 128 with activation checkpointing)
    last = results[best]
    for batch in sorted(args.batches):
        checkpointing = batch >= 64 and not args.smoke
        estimate = last["step_s"] * batch / small * (1.4 if checkpointing else 1.0) * (args.steps + args.warmup)
        if batch != small and estimate > remaining():
            emit(check, f"batch{batch}_skipped", round(estimate), "s estimated > budget left", batch=batch)
            continue
        r = last if batch == small else None
        while r is None:
            try:
                r = run_config(args, registry, mcfg, budgets, batch, best, checkpointing, device, peak, args.steps,
                               args.warmup)
            except torch.OutOfMemoryError:
                emit(check, f"batch{batch}_out_of_memory", 1, "flag", batch=batch,
                     activation_checkpointing=checkpointing)
                torch.cuda.empty_cache()
                if checkpointing:
                    break
                checkpointing = True  # once more, recomputing activations
        if r is None:
            continue
        last = r
        extra = dict(batch=batch, budgets=list(budgets), attention=best, activation_checkpointing=checkpointing,
                     compile=args.compile)
        emit(check, f"batch{batch}_step_time", r["step_s"], "s", **extra)
        emit(check, f"batch{batch}_tokens_per_s", r["tokens_s"], "tokens/s", **extra)
        emit(check, f"batch{batch}_model_tflops_per_s", r["tflops"], "TFLOP/s", **extra)
        if r["mfu"] is not None:
            emit(check, f"batch{batch}_mfu", 100 * r["mfu"], "%", **extra)
        if r["mem"] is not None:
            emit(check, f"batch{batch}_peak_memory", r["mem"], "GiB", **extra)
    emit(check, "wall_time", time.perf_counter() - t_start, "s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
