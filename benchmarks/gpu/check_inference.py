"""GPU check: EgoM2P inference latency per 2-second sequence for each task, base model, random weights.

    python benchmarks/gpu/check_inference.py            # base registry + base model on CUDA (~1 min)
    python benchmarks/gpu/check_inference.py --smoke    # tiny sizes on CPU (tested)

Runs the real task code path (egom2p.tasks.TaskRunner: tokenize -> generate with the official preset
-> detokenize) at batch size 1 on a synthetic 60-frame 256x256 clip, with random weights of the real
sizes: the base model (T5-Base scale, ~400M parameters) and the project's base FSQ video tokenizer /
base VQ-VAE tokenizers (Cosmos weights cannot be downloaded here; the paper's timing includes the
Cosmos encoder). Prints one JSON line per measurement: {"check", "metric", "value", "unit"}; the
paper's numbers (0.18 s per 60-frame camera sequence, 0.8 s per depth video) are printed beside as
ratios (paper / ours: > 1 means faster than the paper).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

PAPER_S = {"camera": 0.18, "depth": 0.8}


def emit(metric: str, value, unit: str) -> None:
    print(json.dumps({"check": "inference", "metric": metric, "value": value, "unit": unit}), flush=True)


def random_tokenizers(registry, size: str, device: str) -> dict:
    """Untrained tokenizers of the registry's sizes (timing does not depend on the weights)."""
    from egom2p.tokenizers import SequenceTokenizer, VideoTokenizer
    from egom2p.tokenizers.fsq import FSQ_PRESETS, CausalVideoFSQ, FSQVideoConfig
    from egom2p.tokenizers.vqvae import VQVAE_PRESETS, SequenceVQVAE, VQVAEConfig

    toks = {}
    for m in ("rgb", "depth"):
        spec = registry[m]
        net = CausalVideoFSQ(FSQVideoConfig(levels=tuple(spec.fsq_levels), **FSQ_PRESETS[size])).eval()
        toks[m] = VideoTokenizer(m, net, registry, {"kind": "fsq", "sha256": "random"}, device=device)
    for m, ch in (("gaze", 2), ("cam", 9)):
        spec = registry[m]
        net = SequenceVQVAE(VQVAEConfig(in_channels=ch, frames=spec.frames, codebook_size=spec.vocab_size,
                                        **VQVAE_PRESETS[size])).eval()
        norm = {"mean": np.zeros(9, np.float32), "std": np.ones(9, np.float32)} if m == "cam" else None
        toks[m] = SequenceTokenizer(m, net, registry, {"kind": "vqvae", "sha256": "random"}, norm=norm, device=device)
    return toks


def synthetic_clip(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One standard clip's inputs: rgb uint8 [1, 60, S, S, 3] and depth [1, 60, S, S] in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ph = rng.random(3) * 6.28
    t = np.arange(60, dtype=np.float32)[:, None, None]
    rgb = np.stack([127.5 + 100 * np.sin((xx + 2 * t) / (9 + 3 * c) + (yy - t) / 13 + ph[c]) for c in range(3)], -1)
    depth = (0.5 + 0.4 * np.sin(xx / 17 + t / 20) * np.cos(yy / 23)).astype(np.float32)
    return {"rgb": rgb.astype(np.uint8)[None], "depth": np.clip(depth, 0, 1)[None]}


def build(smoke: bool, device: str):
    from egom2p.model import ModelConfig, build_model
    from egom2p.modalities import get_registry
    from egom2p.tasks import TaskRunner

    size = "tiny" if smoke else "base"
    registry = get_registry(size)
    if smoke:
        cfg = ModelConfig(dim=96, encoder_layers=2, decoder_layers=2, heads=4, registry="tiny")
    else:
        cfg = ModelConfig(registry="base")  # dim 768, 12 + 12 layers, 12 heads
    torch.manual_seed(0)
    model = build_model(cfg, registry).to(device).eval()
    runner = TaskRunner(model=model, registry=registry, tokenizers=random_tokenizers(registry, size, device),
                        device=device)
    return runner, model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on CPU")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per task (default 10, smoke 1)")
    ap.add_argument("--tasks", nargs="+", default=["camera", "depth", "gaze", "rgb"])
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if not args.smoke and device != "cuda":
        print("check_inference: no CUDA device; use --smoke on CPU", file=sys.stderr)
        return 2
    reps = args.reps or (1 if args.smoke else 10)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    runner, model = build(args.smoke, device)
    emit("model_params", model.num_params(), "count")
    emit("device", torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "name")
    clip = synthetic_clip(runner.image_size())
    from egom2p.tasks import Timing, get_task

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    for task in args.tasks:
        spec = get_task(task)
        inputs = {m: clip[m] for m in spec.inputs}
        with autocast:
            runner.run(spec, inputs, batch_size=1)  # warm-up (cuDNN autotune, kernels)
            totals, gens = [], []
            for _ in range(reps):
                t = Timing()
                runner.run(spec, inputs, batch_size=1, timing=t)
                totals.append(t.total_s)
                gens.append(t.generate_s)
        total, gen = statistics.median(totals), statistics.median(gens)
        emit(f"{task}_s_per_seq", round(total, 5), "s")
        emit(f"{task}_generate_s_per_seq", round(gen, 5), "s")
        if task in PAPER_S:
            emit(f"{task}_paper_s_per_seq", PAPER_S[task], "s")
            emit(f"{task}_speedup_vs_paper", round(PAPER_S[task] / total, 3), "x")
    if device == "cuda":
        emit("peak_memory", round(torch.cuda.max_memory_allocated() / 2**30, 3), "GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
