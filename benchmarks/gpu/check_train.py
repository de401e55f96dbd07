"""GPU check of training the base model: step time, tokens/s, peak memory and MFU against the bf16 peak.

    python benchmarks/gpu/check_train.py                 # on one H100/H200 (< 2 min)
    python benchmarks/gpu/check_train.py --smoke         # tiny sizes on CPU (what the tests run)

Batches come from the real masking sampler on a small synthetic token DB with the base registry
(5120-token videos, budgets 2048 + 2048). One JSON line per measurement:
{"check": "train_base", "metric": ..., "value": ..., "unit": ...}.

Model FLOPs per step (the MFU numerator) = 3 x forward FLOPs: 2 x (multiply-adds) of every linear
layer on its tokens, attention scores and values (4 N_q N_k D per layer, full matrices as the kernel
computes them, padding included) and the tied output projection (2 D V_m per target token).
Peak: 989 TFLOP/s dense bf16 for H100 SXM and H200 (override with --peak-tflops).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from egom2p.model import EgoM2P, ModelConfig, combine_losses  # noqa: E402
from egom2p.sampler import MaskingSampler  # noqa: E402
from egom2p.train import make_optimizer  # noqa: E402
from train_factories import make_token_db  # noqa: E402

PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


def emit(metric: str, value: float, unit: str, check: str = "train_base", **extra):
    print(json.dumps({"check": check, "metric": metric, "value": round(float(value), 6), "unit": unit, **extra}),
          flush=True)


def step_flops(model: EgoM2P, batch: dict) -> float:
    """Forward + backward model FLOPs of one step on ``batch`` (3 x forward)."""
    cfg = model.cfg
    D, H = cfg.dim, cfg.mlp_hidden
    B, Ni = batch["enc_tok"].shape
    Nt = batch["dec_tok"].shape[1]
    mlp = 2 * (3 * D * H)  # SwiGLU: gate+up (D -> 2H) and down (H -> D)
    self_attn = 2 * (4 * D * D)  # q, kv (D -> 2D), proj per token
    enc = cfg.encoder_layers * (B * Ni * (self_attn + mlp) + 4 * B * Ni * Ni * D)
    dec = cfg.decoder_layers * (B * Nt * (self_attn + mlp) + 4 * B * Nt * Nt * D  # self-attention (full matrix)
                                + B * Nt * 2 * (2 * D * D) + B * Ni * 2 * (2 * D * D)  # cross: q, proj | kv
                                + 4 * B * Nt * Ni * D)
    logits = 0
    for i, m in enumerate(model.modalities):
        n = int((batch["dec_valid"] & (batch["dec_mod"] == i)).sum())
        logits += 2 * n * D * model.registry[m].vocab_size
    return 3.0 * (enc + dec + logits)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny model and registry on CPU")
    ap.add_argument("--batch", type=int, default=16, help="per-GPU batch (samples)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="torch.compile the transformer blocks")
    ap.add_argument("--peak-tflops", type=float, default=None)
    args = ap.parse_args()

    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if not args.smoke and device.type != "cuda":
        print("no CUDA device: run with --smoke on CPU", file=sys.stderr)
        return 2
    if args.smoke:
        registry, mcfg, budgets = "tiny", ModelConfig(dim=96, encoder_layers=2, decoder_layers=2, heads=4,
                                                      registry="tiny"), (128, 128)
        args.batch, args.steps, args.warmup = min(args.batch, 4), min(args.steps, 3), 1
    else:
        registry, mcfg, budgets = "base", ModelConfig(), (2048, 2048)
    check = "train_base" if not args.smoke else "train_smoke"
    torch.backends.cuda.matmul.allow_tf32 = True
    with tempfile.TemporaryDirectory() as d:
        db = make_token_db(Path(d) / "tok.lance", registry=registry,
                           parts=(("egogen", 48, ("rgb", "depth", "gaze", "cam")), ("hot3d", 16, ("rgb", "cam"))))
        s = MaskingSampler(db, {"input_budget": budgets[0], "target_budget": budgets[1]}, seed=0,
                           batch_size=args.batch)
        t = time.perf_counter()
        batches = [{k: v for k, v in s.batch(b).items() if k != "row"} for b in range(4)]
        emit("sampler_samples_per_s", 4 * args.batch / (time.perf_counter() - t), "samples/s", check)
    torch.manual_seed(0)
    model = EgoM2P(mcfg, s.registry).to(device)
    emit("params", model.num_params() / 1e6, "M", check)
    if args.compile:
        for blk in list(model.encoder) + list(model.decoder):
            blk.compile()
    opt = make_optimizer(model, argparse.Namespace(weight_decay=0.05, lr=1e-4, betas=(0.9, 0.95)))
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu",
                                                                                                   enabled=False)
    gpu_batches = [{k: v.to(device) for k, v in b.items()} for b in batches]

    def step(b):
        with amp:
            loss, _ = combine_losses(model(b))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    for i in range(args.warmup):
        step(gpu_batches[i % 4])
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    flops = tokens = 0.0
    t = time.perf_counter()
    for i in range(args.steps):
        b = gpu_batches[i % 4]
        loss = step(b)
        flops += step_flops(model, b)
        tokens += float(b["enc_valid"].sum() + b["dec_valid"].sum())
    loss.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    emit("step_time", dt / args.steps, "s", check, batch=args.batch, budgets=list(budgets))
    emit("tokens_per_s", tokens / dt, "tokens/s", check)
    emit("model_tflops_per_s", flops / dt / 1e12, "TFLOP/s", check)
    if device.type == "cuda":
        emit("peak_memory", torch.cuda.max_memory_allocated() / 2**30, "GiB", check)
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops * 1e12 if args.peak_tflops else next((v for k, v in PEAKS.items() if k in name), None)
        if peak:
            emit("mfu", 100 * flops / dt / peak, "%", check, device=name, peak_tflops=peak / 1e12)
    emit("loss", float(loss.detach()), "nats", check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
