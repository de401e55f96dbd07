"""Curation throughput: clips/s per core for split + standardize (+ encode into clips-table rows) on
rendered egogen data, against a bare FFmpeg decode + H.264 encode of the same clips, measured in the
same run. Target: split + standardize >= 0.5x the bare FFmpeg rate.

The headline compares like with like: split + standardize of RGB, camera and gaze (depth annotator
``none``) against FFmpeg's RGB decode + encode. A second line adds the depth stages (``render``
annotation, inverse-depth normalisation, float16 + Blosc-zstd compression), work the FFmpeg
baseline does not do. Both sides run on one core: the curation stages in this process (decord and
x264 with one thread), the baseline is FFmpeg's own codecs driven through PyAV in this process
(one decoder and one x264 thread; decoded yuv420p frames go straight back into the encoder, no RGB
conversion, as ``ffmpeg -i in.mp4 -vf select=... -c:v libx264 out.mp4`` did before the project
stopped needing the ffmpeg executable).

    python benchmarks/bench_curate.py                 # renders 1 sequence of 6 s at 256x256 first
    python benchmarks/bench_curate.py --raw DIR       # an existing `egom2p render egogen` folder
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from egom2p.adapters import get_adapter  # noqa: E402
from egom2p.annotators import get_annotator  # noqa: E402
from egom2p.curate import stages  # noqa: E402


def curate_clips(raw: Path, stride: int, size: int, depth: str) -> tuple[int, float]:
    adapter, annotator = get_adapter("egogen"), get_annotator(depth)
    t0 = time.perf_counter()
    n = 0
    for ref in stages.discover(adapter, raw):
        res = stages.split(adapter, ref, stride, done=set(), windows_per_task=1_000_000)
        for chunk in res.chunks:
            out = stages.process_chunk(adapter, annotator, chunk, size)
            assert not out.quarantined, out.quarantined[0]
            n += len(out.rows)
    return n, time.perf_counter() - t0


def bare_ffmpeg_clips(raw: Path, stride: int) -> tuple[int, float]:
    """Decode frames [s, s + 60) of each window and re-encode them as H.264 in memory: FFmpeg only (PyAV)."""
    import io
    from fractions import Fraction

    import av

    adapter = get_adapter("egogen")
    jobs = []
    for ref in stages.discover(adapter, raw):
        seq = adapter.load(ref)
        for s in stages.clip_starts(seq.num_frames, 60, stride):
            jobs.append((Path(ref.path) / "rgb.mp4", s))
    t0 = time.perf_counter()
    for path, s in jobs:
        out = io.BytesIO()
        with av.open(str(path)) as src, av.open(out, mode="w", format="mp4") as dst:
            vin = src.streams.video[0]
            vin.codec_context.thread_count = 1
            enc = dst.add_stream("libx264", rate=30)
            enc.width, enc.height, enc.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
            enc.codec_context.options = {"preset": "veryfast", "crf": "18"}
            enc.codec_context.thread_count = 1
            enc.codec_context.time_base = Fraction(1, 30)
            for i, frame in enumerate(src.decode(vin)):  # select by frame number, as the curation does
                if i >= s + 60:
                    break
                if i >= s:
                    frame.pts = i - s  # the encoder time base is 1/30 s
                    dst.mux(enc.encode(frame))
            dst.mux(enc.encode())
    return len(jobs), time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", type=Path, default=None, help="an egogen render folder (default: render one now)")
    ap.add_argument("--stride", type=int, default=20, help="frames between clip starts (default 20)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2, help="take the best of this many passes (default 2)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_curate_") as td:
        tmp = Path(td)
        raw = args.raw
        if raw is None:
            raw = tmp / "raw"
            t = time.perf_counter()
            subprocess.run([str(Path(sys.executable).parent / "egom2p"), "render", "egogen", "--out", str(raw),
                            "--sequences", "1", "--seconds", "6", "--size", "256", "--seed", "0", "--threads", "0"],
                           check=True, capture_output=True)
            print(f"rendered 1 egogen sequence of 6 s at 256x256 in {time.perf_counter() - t:.1f} s")
        ours, full, base = [], [], []
        for _ in range(args.repeat):  # interleaved, so load changes hit both sides alike
            n, dt = curate_clips(raw, args.stride, args.size, "none")
            ours.append(n / dt)
            m, dt2 = bare_ffmpeg_clips(raw, args.stride)
            base.append(m / dt2)
            n, dt3 = curate_clips(raw, args.stride, args.size, "render")
            full.append(n / dt3)
        r_ours, r_full, r_base = max(ours), max(full), max(base)
        print(f"clips: {n} (2 s, 60 frames each, stride {args.stride}) at {args.size}x{args.size}, one core each, "
              f"best of {args.repeat}")
        print(f"curation split + standardize (rgb, cam, gaze) + encode: {r_ours:.2f} clips/s per core")
        print(f"bare FFmpeg (PyAV) decode + H.264 encode (baseline):    {r_base:.2f} clips/s per core")
        print(f"ratio split+standardize / FFmpeg: {r_ours / r_base:.2f}x (target >= 0.50x)")
        print(f"with render depth (annotate + inverse depth + compress): {r_full:.2f} clips/s per core, "
              f"{r_full / r_base:.2f}x FFmpeg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
