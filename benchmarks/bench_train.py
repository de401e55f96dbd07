"""Training throughput on CPU: the tiny model's tokens/s and the masking sampler's samples/s alone.

Baseline: the rate at which the model consumes samples (samples/s of a full training step), measured
in the same run; the sampler must produce at least 10x that, so data never limits training.

    python benchmarks/bench_train.py [--steps 20] [--batch 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from egom2p.model import EgoM2P, ModelConfig, combine_losses  # noqa: E402
from egom2p.sampler import MaskingSampler  # noqa: E402
from egom2p.train import compose_config, make_optimizer  # noqa: E402
from train_factories import make_token_db  # noqa: E402


def sampler_rate(db: str, budgets: tuple[int, int], batch: int, n_batches: int) -> float:
    s = MaskingSampler(db, {"input_budget": budgets[0], "target_budget": budgets[1]}, seed=0, batch_size=batch)
    s.batch(0)
    t = time.perf_counter()
    for b in range(1, n_batches + 1):
        s.batch(b)
    return n_batches * batch / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose_config(["model=tiny"])
    budgets = (int(cfg.data.input_budget), int(cfg.data.target_budget))
    with tempfile.TemporaryDirectory() as d:
        db = make_token_db(Path(d) / "tiny.lance", parts=(("egogen", 192, ("rgb", "depth", "gaze", "cam")),
                                                          ("hot3d", 64, ("rgb", "cam"))))
        # ---- the model: full training steps (forward, backward, AdamW) on sampler batches ---------
        s = MaskingSampler(db, {"input_budget": budgets[0], "target_budget": budgets[1]}, seed=0,
                           batch_size=args.batch)
        batches = [{k: v for k, v in s.batch(b).items() if k != "row"} for b in range(4)]
        torch.manual_seed(0)
        model = EgoM2P(ModelConfig.from_dict(dict(cfg.model)), s.registry)
        opt = make_optimizer(model, cfg.optim)

        def step(b):
            loss, _ = combine_losses(model(b))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        for b in batches[:2]:
            step(b)
        t = time.perf_counter()
        tokens = 0
        for i in range(args.steps):
            b = batches[i % len(batches)]
            step(b)
            tokens += int(b["enc_valid"].sum() + b["dec_valid"].sum())
        dt = time.perf_counter() - t
        model_tok_s, model_samples_s = tokens / dt, args.steps * args.batch / dt
        # ---- the sampler alone (one process, batched takes) ---------------------------------------
        samp_s = sampler_rate(db, budgets, args.batch, 40)
        base_db = make_token_db(Path(d) / "base.lance", registry="base",
                                parts=(("egogen", 48, ("rgb", "depth", "gaze", "cam")), ("hot3d", 16, ("rgb", "cam"))))
        samp_base = sampler_rate(base_db, (2048, 2048), 16, 8)
    print(f"tiny model ({model.num_params() / 1e6:.2f}M params, batch {args.batch}, budgets {budgets[0]}+{budgets[1]}, "
          f"{torch.get_num_threads()} threads): {model_tok_s:,.0f} tokens/s = {model_samples_s:,.1f} samples/s "
          f"({dt / args.steps * 1000:.1f} ms/step)")
    print(f"sampler alone, tiny registry: {samp_s:,.0f} samples/s (one process)")
    ratio = samp_s / model_samples_s
    print(f"ratio sampler / model consumption (baseline) = {ratio:.1f}x  [{'OK' if ratio >= 10 else 'BELOW'} the 10x "
          "target]")
    print(f"sampler alone, base registry (5120-token videos, budgets 2048+2048): {samp_base:,.0f} samples/s per "
          "process (DataLoader workers multiply it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
