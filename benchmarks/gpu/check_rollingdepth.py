"""GPU check: RollingDepth snippet throughput of a randomly initialised network of the real size.

Builds the released checkpoint's architecture (SD-2-class UNet with 8 input channels and cross-frame
self-attention, SD-2 VAE, CLIP text encoder; configurations written out in
``egom2p/rollingdepth/random_init.py``) with random weights -- no download -- and measures, at the
official resolution (longest side 768, HoloAssist's 16:9 aspect -> 768x432):

* VAE encode and decode throughput (frames/s),
* UNet snippet throughput (3-frame snippets, one denoising step; frames/s and snippets/s),
* end-to-end throughput of the ``fast`` preset on a segment (encode, snippets at dilations 1 and 25,
  decode, co-alignment on the CPU), and the time this implies per 60-frame clip,
* peak GPU memory.

One JSON line per measurement: {"check", "metric", "value", "unit"}. Usage::

    python benchmarks/gpu/check_rollingdepth.py            # on a GPU machine (< 2 min on one H100)
    python benchmarks/gpu/check_rollingdepth.py --smoke    # tiny network on the CPU (the test runs this)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from egom2p.rollingdepth import random_init  # noqa: E402
from egom2p.rollingdepth.pipeline import processing_size, torch_dtype  # noqa: E402
from egom2p.rollingdepth.presets import preset_config  # noqa: E402

CHECK = "rollingdepth"


def emit(metric: str, value: float, unit: str, **extra) -> None:
    print(json.dumps({"check": CHECK, "metric": metric, "value": round(float(value), 4), "unit": unit, **extra}),
          flush=True)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Mean seconds of ``fn()`` after one warm-up call."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny network, small frames, CPU")
    ap.add_argument("--resolution", type=int, default=768, help="longest side fed to the network (official: 768)")
    ap.add_argument("--source", type=int, nargs=2, default=(504, 896), metavar=("H", "W"),
                    help="source frame size (aspect only; default HoloAssist 504x896)")
    ap.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16")
    ap.add_argument("--batch-size", type=int, default=8, help="snippets per UNet call")
    ap.add_argument("--frames", type=int, default=60, help="frames of the end-to-end segment")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    if args.smoke:
        size, device = "tiny", torch.device("cpu")
        args.resolution, args.frames, args.repeats, args.batch_size = 32, 12, 1, 4
    else:
        size = "real"
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device.type != "cuda":
            print("no GPU: run with --smoke on a CPU machine", file=sys.stderr)
            return 2
    dtype = torch_dtype(args.dtype, device)
    t0 = time.perf_counter()
    pipe = random_init.build_pipeline(size)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.to(device=device, dtype=dtype)
    emit("build_seconds", time.perf_counter() - t0, "s", size=size)
    emit("unet_parameters", sum(p.numel() for p in pipe.unet.parameters()) / 1e6, "M")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats()

    h, w = processing_size(*args.source, args.resolution)
    f = pipe.vae_factor
    tags = dict(device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu", dtype=str(dtype).split(".")[-1],
                resolution=f"{w}x{h}")
    g = torch.Generator().manual_seed(0)
    k, b = 3, args.batch_size

    with torch.no_grad():
        images = (torch.rand(b * k, 3, h, w, generator=g) * 2 - 1).to(device, dtype)
        sec = timed(lambda: pipe.encode(images, b * k), device, args.repeats)
        emit("vae_encode_frames_per_s", b * k / sec, "frames/s", **tags)

        rgb = torch.randn(b, k, 4, h // f, w // f, generator=g).to(device, dtype)
        z = torch.randn(b, k, 4, h // f, w // f, generator=g).to(device, dtype)
        t = torch.tensor(999, device=device)
        pipe.empty_text_embedding()
        sec = timed(lambda: pipe.unet_step(rgb, z, t), device, args.repeats)
        emit("snippet_frames_per_s", b * k / sec, "frames/s", snippet_length=k, batch=b, **tags)
        emit("snippets_per_s", b / sec, "snippets/s", snippet_length=k, batch=b, **tags)

        sec = timed(lambda: pipe.decode(z.flatten(0, 1), b * k), device, args.repeats)
        emit("vae_decode_frames_per_s", b * k / sec, "frames/s", **tags)

        frames = (np.random.default_rng(0).random((args.frames, *args.source, 3)) * 255).astype(np.uint8)
        cfg = preset_config("fast", processing_resolution=args.resolution, dtype=args.dtype, batch_size=b,
                            vae_batch_size=2 * b)
        pipe.predict(frames[: min(len(frames), 8)], cfg, progress=False)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = pipe.predict(frames, cfg, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        t1 = time.perf_counter()
        from egom2p.rollingdepth.coalign import coalign
        coalign(out.snippets, len(frames), cfg.coalign)
        coalign_sec = time.perf_counter() - t1
    emit("end_to_end_frames_per_s", args.frames / sec, "frames/s", preset="fast", frames=args.frames,
         dilations=list(out.dilations), snippets=len(out.snippets), **tags)
    emit("seconds_per_60_frame_clip", 60 * sec / args.frames, "s", preset="fast", **tags)
    emit("coalign_seconds", coalign_sec, "s", frames=args.frames, snippets=len(out.snippets))
    if device.type == "cuda":
        emit("peak_gpu_memory", torch.cuda.max_memory_allocated() / 2**30, "GiB", **tags)
    return 0


if __name__ == "__main__":
    sys.exit(main())
