"""GPU check: EgoM2P inference latency per 2-second sequence, base model, random weights.

    python benchmarks/gpu/check_inference.py            # base registry + base model on CUDA (~1 min)
    python benchmarks/gpu/check_inference.py --smoke    # tiny sizes on CPU (tested)

Two parts, one JSON line per measurement ({"check", "metric", "value", "unit"}), batch size 1:

1. **The model alone** (needs only torch): ``egom2p.generate`` with the official presets from the video
   tokens of one clip (5 x 32 x 32 = 5120 RGB tokens at the base registry) to the camera trajectory
   of its 60 frames (``camera_model_s``, 30 tokens, 3 steps) and to the depth of its 16 token frames
   (``depth_model_s``, 5120 tokens, 3 steps), classifier-free guidance included (the two passes share a
   batch), bf16 autocast on CUDA. Goals: camera < 0.05 s, depth < 0.25 s (paper: 0.18 s, 0.8 s).
2. **End to end** when the project's tokenizers import (numpy, OpenCV): the real task path
   (egom2p.tasks.TaskRunner: tokenize -> generate -> detokenize) on a synthetic 60-frame 256x256 clip
   with the project's base FSQ video tokenizer and base VQ-VAE tokenizers (Cosmos weights cannot be
   downloaded here; the paper's timing includes the Cosmos encoder). Otherwise reported as skipped.

The paper's numbers are printed beside as ratios (paper / ours: > 1 means faster than the paper).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

PAPER_S = {"camera": 0.18, "depth": 0.8}


def emit(metric: str, value, unit: str) -> None:
    print(json.dumps({"check": "inference", "metric": metric, "value": value, "unit": unit}), flush=True)


def random_tokenizers(registry, size: str, device: str) -> dict:
    """Untrained tokenizers of the registry's sizes (timing does not depend on the weights)."""
    import numpy as np

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


def synthetic_clip(size: int, seed: int = 0) -> dict:
    """One standard clip's inputs: rgb uint8 [1, 60, S, S, 3] and depth [1, 60, S, S] in [0, 1]."""
    import numpy as np

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


def model_only(smoke: bool, device: str, reps: int) -> None:
    """Generation latency of the model alone (torch only): video tokens -> camera / depth tokens."""
    from egom2p.generate import generate
    from egom2p.modalities import get_registry
    from egom2p.model import ModelConfig, build_model

    registry = get_registry("tiny" if smoke else "base")
    cfg = (ModelConfig(dim=96, encoder_layers=2, decoder_layers=2, heads=4, registry="tiny") if smoke
           else ModelConfig(registry="base"))
    torch.manual_seed(0)
    model = build_model(cfg, registry).to(device).eval()
    g = torch.Generator(device=device).manual_seed(0)
    rgb = torch.randint(0, registry["rgb"].vocab_size, (1, registry["rgb"].num_tokens), device=device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for task, target, preset in (("camera", "cam", "camera"), ("depth", "depth", "depth")):
        with amp:
            generate(model, {"rgb": rgb}, target, preset, generator=g)  # warm-up
            times = []
            for _ in range(reps):
                sync()
                t = time.perf_counter()
                out = generate(model, {"rgb": rgb}, target, preset, generator=g)[target]
                sync()
                times.append(time.perf_counter() - t)
        assert out.shape == (1, registry[target].num_tokens)
        s = statistics.median(times)
        emit(f"{task}_model_s", round(s, 5), "s")
        if task in PAPER_S:
            emit(f"{task}_model_speedup_vs_paper", round(PAPER_S[task] / s, 3), "x")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on CPU")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per task (default 10, smoke 1)")
    ap.add_argument("--tasks", nargs="+", default=None, help="end-to-end tasks (default: all four; smoke: camera, "
                                                                "depth)")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if not args.smoke and device != "cuda":
        print("check_inference: no CUDA device; use --smoke on CPU", file=sys.stderr)
        return 2
    reps = args.reps or (1 if args.smoke else 10)
    args.tasks = args.tasks or (["camera", "depth"] if args.smoke else ["camera", "depth", "gaze", "rgb"])
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model_only(args.smoke, device, reps)
    try:
        runner, model = build(args.smoke, device)
    except ImportError as e:  # a machine with torch only: the project's tokenizers need numpy and OpenCV
        emit("end_to_end_skipped", f"missing {e.name}", "reason")
        return 0
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
