"""GPU check of the tokenizers: clips per second of the base-size tokenizers (encode and decode).

Measures, on one GPU: the gaze and cam Transformer VQ-VAE at the paper's size (dim 768, 12 blocks,
256 codes) and the project's causal FSQ video tokenizer at the base registry (256 x 256, 16 frames
-> 5 x 32 x 32 tokens, FSQ 8,8,8,5,5,5), fp32 and bf16 autocast, plus a few training steps of each
(steps/s). Untrained weights: speed does not depend on them. Prints one JSON line per measurement.
``--smoke`` runs tiny sizes on CPU (used by the tests). Budget: under 2 minutes on one H100.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def emit(check: str, metric: str, value: float, unit: str, **extra) -> None:
    print(json.dumps({"check": check, "metric": metric, "value": round(float(value), 4), "unit": unit, **extra}),
          flush=True)


def timed(fn, sync, min_seconds: float, min_iters: int = 2) -> float:
    """Seconds per call (after one warm-up call)."""
    fn()
    sync()
    n, t0 = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - t0 < min_seconds:
        fn()
        n += 1
    sync()
    return (time.perf_counter() - t0) / n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--smoke", action="store_true", help="tiny sizes on CPU (seconds)")
    args = p.parse_args(argv)

    from egom2p.modalities import get_registry
    from egom2p.tokenizers import SequenceTokenizer, VideoTokenizer
    from egom2p.tokenizers.fsq import FSQ_PRESETS, CausalVideoFSQ, FSQVideoConfig
    from egom2p.tokenizers.vqvae import VQVAE_PRESETS, SequenceVQVAE, VQVAEConfig

    smoke = args.smoke
    dev = torch.device("cpu" if smoke or not torch.cuda.is_available() else "cuda")
    if dev.type == "cpu":
        torch.set_num_threads(1)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    size = "tiny" if smoke else "base"
    reg = get_registry(size)
    secs = 0.2 if smoke else 3.0
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    rng = np.random.default_rng(0)
    torch.manual_seed(0)

    # --- gaze / cam VQ-VAE -------------------------------------------------------------------
    seq_batch = 16 if smoke else 512
    for m, ch in (("gaze", 2), ("cam", 9)):
        model = SequenceVQVAE(VQVAEConfig(in_channels=ch, codebook_size=reg[m].vocab_size, **VQVAE_PRESETS[size])).to(dev)
        if m == "gaze":
            x = (0.5 + 0.2 * rng.standard_normal((seq_batch, 60, 2))).astype(np.float32).clip(0, 1)
            norm = None
        else:
            x = np.tile(np.eye(4, dtype=np.float32), (seq_batch, 60, 1, 1))
            x[:, :, 2, 3] = np.linspace(0, 2, 60)
            norm = {"mean": [0.0] * 9, "std": [1.0] * 9}
        tok = SequenceTokenizer(m, model, reg, {"kind": "vqvae", "sha256": "check"}, norm=norm, device=str(dev))
        for amp in ([False] if dev.type == "cpu" else [False, True]):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                s = timed(lambda: tok.encode(x), sync, secs)
                emit(f"tokenizer_{m}_vqvae_{size}", "encode_clips_per_s", seq_batch / s, "clips/s",
                     batch=seq_batch, bf16=amp, device=name)
                toks = tok.encode(x)
                s = timed(lambda: tok.decode(toks), sync, secs)
                emit(f"tokenizer_{m}_vqvae_{size}", "decode_clips_per_s", seq_batch / s, "clips/s",
                     batch=seq_batch, bf16=amp, device=name)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        inp = torch.from_numpy(tok.prepare(x[: min(seq_batch, 256)])[0]).to(dev)

        def step():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss, _ = model.loss(inp)
            opt.zero_grad()
            loss.backward()
            opt.step()

        s = timed(step, sync, secs)
        emit(f"tokenizer_{m}_vqvae_{size}", "train_steps_per_s", 1 / s, "steps/s", batch=len(inp), device=name)
        del model, opt, tok

    # --- causal FSQ video tokenizer ----------------------------------------------------------
    spec = reg["rgb"]
    vid_batch = 2 if smoke else 8
    S = spec.image_size
    net = CausalVideoFSQ(FSQVideoConfig(levels=spec.fsq_levels, **FSQ_PRESETS[size])).to(dev).eval()
    emit(f"tokenizer_video_fsq_{size}", "parameters", sum(p.numel() for p in net.parameters()) / 1e6, "M")
    rgb = rng.integers(0, 255, (vid_batch, 60, S, S, 3), dtype=np.uint8)
    tok = VideoTokenizer("rgb", net, reg, {"kind": "fsq", "sha256": "check"}, device=str(dev))
    for amp in ([False] if dev.type == "cpu" else [False, True]):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            s = timed(lambda: tok.encode(rgb), sync, secs)
            emit(f"tokenizer_video_fsq_{size}", "encode_clips_per_s", vid_batch / s, "clips/s", batch=vid_batch,
                 bf16=amp, image=S, device=name)
            t = tok.encode(rgb)
            assert t.shape == (vid_batch, spec.num_tokens) and t.max() < spec.vocab_size
            s = timed(lambda: tok.decode(t), sync, secs)
            emit(f"tokenizer_video_fsq_{size}", "decode_clips_per_s", vid_batch / s, "clips/s", batch=vid_batch,
                 bf16=amp, image=S, device=name)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    xb = tok.prepare(rgb[: 1 if smoke else 2]).to(dev)  # 256x256x17 activations: keep the training batch small

    def vstep():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss, _ = net.loss(xb)
        opt.zero_grad()
        loss.backward()
        opt.step()

    s = timed(vstep, sync, secs, min_iters=1 if smoke else 2)
    emit(f"tokenizer_video_fsq_{size}", "train_steps_per_s", 1 / s, "steps/s", batch=len(xb), device=name)
    if dev.type == "cuda":
        emit(f"tokenizer_video_fsq_{size}", "peak_memory", torch.cuda.max_memory_allocated() / 2**30, "GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
