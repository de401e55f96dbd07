"""CPU speed of the tokenizers: clips per second per core (torch on one thread).

Measured: gaze and cam Transformer VQ-VAE (tiny and base sizes) and the tiny causal FSQ video
tokenizer, each through ``Tokenizer.encode`` on standard-clip arrays (input preparation, encoder,
quantisation). Baseline, measured in the same run: the same model's encoder forward pass on already
prepared input, without quantisation ("encoder only"); the ratio shows what preparation and
quantisation add. Run: ``python benchmarks/bench_tokenizers.py`` (about 30-60 s).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from factories import make_clip  # noqa: E402

from egom2p.modalities import get_registry  # noqa: E402
from egom2p.tokenizers import SequenceTokenizer, VideoTokenizer  # noqa: E402
from egom2p.tokenizers.fsq import FSQ_PRESETS, CausalVideoFSQ, FSQVideoConfig  # noqa: E402
from egom2p.tokenizers.train import cam_norm_stats  # noqa: E402
from egom2p.tokenizers.vqvae import VQVAE_PRESETS, SequenceVQVAE, VQVAEConfig  # noqa: E402


def rate(fn, clips_per_call: int, min_seconds: float = 2.0) -> float:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        fn()
        n += clips_per_call
    return n / (time.perf_counter() - t0)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, 1 thread (clips/s per core)")
    print(f"{'tokenizer':<22}{'batch':>6}{'clips/s':>10}{'baseline clips/s':>18}{'ratio':>8}   baseline")
    clips = [make_clip(sequence=f"s{i}", seed=i, size=64) for i in range(8)]
    results = []
    for size, reg_name, batch in (("tiny", "tiny", 32), ("base", "base", 8)):
        reg = get_registry(reg_name)
        for m, ch in (("gaze", 2), ("cam", 9)):
            model = SequenceVQVAE(VQVAEConfig(in_channels=ch, codebook_size=reg[m].vocab_size, **VQVAE_PRESETS[size])).eval()
            x = np.stack([getattr(clips[i % 8], m) for i in range(batch)])
            norm = cam_norm_stats(x) if m == "cam" else None
            tok = SequenceTokenizer(m, model, reg, {"kind": "vqvae", "sha256": "bench"}, norm=norm)
            prepared = torch.from_numpy(tok.prepare(x)[0])
            with torch.no_grad():
                r = rate(lambda: tok.encode(x), batch)
                b = rate(lambda: model.encode_latent(prepared), batch)
            results.append((f"{m} vqvae {size}", batch, r, b))
    reg = get_registry("tiny")
    net = CausalVideoFSQ(FSQVideoConfig(levels=reg["rgb"].fsq_levels, **FSQ_PRESETS["tiny"])).eval()
    for m in ("rgb", "depth"):
        tok = VideoTokenizer(m, net, reg, {"kind": "fsq", "sha256": "bench"})
        batch = 4
        x = np.stack([getattr(clips[i], m) for i in range(batch)])
        prepared = tok.prepare(x)
        with torch.no_grad():
            r = rate(lambda: tok.encode(x), batch)
            b = rate(lambda: net.encoder(net._patch(prepared)), batch)
        results.append((f"{m} fsq tiny 64x64", batch, r, b))
    for name, batch, r, b in results:
        print(f"{name:<22}{batch:>6}{r:>10.1f}{b:>18.1f}{r / b:>8.2f}   encoder forward without quantisation")


if __name__ == "__main__":
    main()
