"""CPU benchmark: per-task inference latency per 2-second sequence (tiny model, tiny tokenizers).

    python benchmarks/bench_inference.py

For each task of the task table (egom2p.tasks.TASKS: camera, gaze, depth, rgb-from-depth) it times the real task path
(egom2p.tasks.TaskRunner.run: tokenize -> generate with the official preset -> detokenize) at batch
size 1, and, as the baseline measured in the same run, the tokenizer encode of the task's input
alone (the floor any tokenized method pays). Prints per task: total, generate, baseline encode and
the ratio total / baseline; the paper's GPU numbers (base model) are printed beside for reference:
0.18 s per 60-frame camera sequence, 0.8 s per depth video. Also times a 10-second video through
the whole predict path (decode, resample, windows, stitch). Under a minute on 2 cores.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent / "gpu"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from check_inference import PAPER_S, build, synthetic_clip  # noqa: E402


def main() -> int:
    torch.set_num_threads(2)
    from egom2p.tasks import TASKS, Timing

    runner, model = build(smoke=True, device="cpu")
    S = runner.image_size()
    clip = synthetic_clip(S)
    reps = 3
    print(f"tiny model ({model.num_params() / 1e6:.2f} M params), tiny registry ({S}x{S} video), CPU, batch 1, "
          f"median of {reps}")
    print(f"{'task':<8}{'total s/seq':>13}{'generate':>10}{'baseline: encode':>18}{'ratio':>8}{'paper (GPU, base)':>20}")
    for task, spec in TASKS.items():  # every task of the task table
        inputs = {m: synthetic_clip(S)[m] for m in spec.inputs}
        runner.run(spec, inputs, batch_size=1)  # warm-up
        totals, gens, encs = [], [], []
        for _ in range(reps):
            t = Timing()
            runner.run(spec, inputs, batch_size=1, timing=t)
            totals.append(t.total_s)
            gens.append(t.generate_s)
            m = spec.inputs[0]
            t0 = time.perf_counter()
            runner.tokenizers[m].encode(inputs[m])
            encs.append(time.perf_counter() - t0)
        tot, gen, enc = statistics.median(totals), statistics.median(gens), statistics.median(encs)
        paper = f"{PAPER_S[task]:.2f} s" if task in PAPER_S else "-"
        print(f"{task:<8}{tot:>13.4f}{gen:>10.4f}{enc:>18.4f}{tot / enc:>8.2f}x{paper:>19}")

    # a 10-second video through the whole predict path (decode + resample + crop + windows + stitch)
    from egom2p.tasks import run_task
    from egom2p.video import encode_h264

    with tempfile.TemporaryDirectory() as d:
        frames = np.repeat(clip["rgb"][0], 5, axis=0)  # 300 frames = 10 s at 30 FPS
        path = Path(d) / "ten_seconds.mp4"
        encode_h264(np.ascontiguousarray(frames), fps=30, path=path)
        t0 = time.perf_counter()
        res = run_task(runner, "camera", video=path, batch_size=8, progress=False)
        wall = time.perf_counter() - t0
        print(f"predict camera on a 10 s video: {wall:.3f} s wall ({len(res.starts)} windows, model part "
              f"{res.timing.total_s:.3f} s, preprocessing + stitching {wall - res.timing.total_s:.3f} s); "
              f"{10 / wall:.1f}x real time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
