"""Video I/O on the clips' access patterns: which decoder, and the in-memory encoder, on one core.

Decoding, baseline = decord (the decoder egom2p used for everything before), against PyAV
(FFmpeg's libraries in this process), both with one thread, on:

* ``clip all``:  all 60 frames of a 2-s 256x256 clip from its mp4 bytes (a clips-table row:
  standardize checks, ``egom2p view``, tokenizer training);
* ``clip tok``:  the 16 token frames (8 FPS) of the same bytes (tokenization);
* ``file window``: 60 frames 18 s deep into a 20-s file (raw adapters cutting a recording).

Encoding, baseline = the ffmpeg command line with a temporary file (the path before; measured only
where an ``ffmpeg`` executable is on PATH), against :func:`egom2p.video.encode_h264` (PyAV, libx264
in memory), same settings (veryfast, CRF 18, yuv420p, one thread).

Rates are given per wall second and per CPU second of the process (all its threads): decord
decodes in a thread of its own and its caller waits, so on a loaded machine its wall rate falls
far below its CPU rate. torchcodec is not measured: its wheels load the system's FFmpeg shared
libraries, the very dependency this path removes. ``egom2p.video`` decodes clip bytes with PyAV
(whole clips are what the clips reader decodes) and keeps decord's random access for files.

    python benchmarks/bench_video.py [--clips 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from egom2p import video  # noqa: E402


def textured_frames(n: int, size: int, seed: int) -> np.ndarray:
    """A scrolling random texture under a moving gradient: an egocentric-like bitrate, not a flat test card."""
    rng = np.random.default_rng(seed)
    tex = rng.integers(0, 256, (size * 2, size * 2, 3), dtype=np.uint8)
    tex = ((tex.astype(np.float32) + np.roll(tex, 1, 0) + np.roll(tex, 1, 1)) / 3).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, size, size, 3), np.uint8)
    for t in range(n):
        crop = tex[2 * t % size:2 * t % size + size, t % size:t % size + size].astype(np.float32)
        out[t] = np.clip(0.6 * crop + 50 + 40 * np.sin((xx + 3 * t) / 30 + yy / 40)[..., None], 0, 255)
    return out


def decord_decode(source, indices=None) -> np.ndarray:
    """The baseline: decord exactly as egom2p called it (one thread; bytes through BytesIO)."""
    import decord

    src = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    vr = decord.VideoReader(src, ctx=decord.cpu(0), num_threads=1)
    idx = range(len(vr)) if indices is None else [int(i) for i in indices]
    return vr.get_batch(list(idx)).asnumpy()


def ffmpeg_cli_encode(frames: np.ndarray, tmp: Path, fps: int = 30, crf: int = 18) -> bytes:
    """The old encoder: the ffmpeg executable reading raw RGB from a pipe, writing a temporary mp4."""
    n, h, w, _ = frames.shape
    out = tmp / "cli.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                    "-r", str(fps), "-i", "pipe:0", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
                    "-pix_fmt", "yuv420p", "-threads", "1", "-movflags", "+faststart", str(out)],
                   input=np.ascontiguousarray(frames).tobytes(), check=True, capture_output=True)
    return out.read_bytes()


def rates(fn, items) -> tuple[float, float]:
    """(items per wall second, items per CPU second of this process, all its threads) of one pass."""
    w0, c0 = time.perf_counter(), time.process_time()
    for it in items:
        fn(it)
    return len(items) / (time.perf_counter() - w0), len(items) / max(time.process_time() - c0, 1e-9)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=8, help="clips per pass (default 8)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many passes (default 3)")
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    tok = video.token_frame_indices()
    raw = [textured_frames(60, args.size, s) for s in range(args.clips)]
    clips = [video.encode_h264(f) for f in raw]
    with tempfile.TemporaryDirectory(prefix="bench_video_") as td:
        tmp = Path(td)
        long_file = tmp / "long.mp4"
        video.encode_h264(textured_frames(600, args.size, 99), path=long_file)
        window = np.arange(540, 600)
        # the decoders agree before anything is timed
        assert np.array_equal(decord_decode(clips[0]), video.decode(clips[0]))
        assert np.array_equal(decord_decode(long_file, window), video._av_decode(str(long_file), "long", window))
        rows = []
        for name, base_fn, new_fn, items in [
            ("clip all (60 of 60 frames, bytes)", decord_decode, video.decode, clips),
            ("clip tok (16 of 60 frames, bytes)", lambda c: decord_decode(c, tok), lambda c: video.decode(c, tok), clips),
            ("file window (60 frames at 18 s)", lambda p: decord_decode(p, window),
             lambda p: video._av_decode(str(p), "long", window), [long_file] * 2),
        ]:
            b, n = [], []
            for _ in range(args.repeat):  # interleaved: load changes hit both sides alike
                b.append(rates(base_fn, items))
                n.append(rates(new_fn, items))
            rows.append((name, max(x[0] for x in b), max(x[0] for x in n), max(x[1] for x in b), max(x[1] for x in n)))
        print(f"decode, one decoder thread, {args.size}x{args.size} H.264 CRF 18, best of {args.repeat} "
              f"({args.clips} clips per pass); per wall second and per CPU second (all threads of the process):")
        print(f"  {'pattern':<36}{'decord wall':>12}{'PyAV wall':>11}{'ratio':>7}  |{'decord CPU':>11}{'PyAV CPU':>10}"
              f"{'ratio':>7}")
        for name, bw, nw, bc, nc in rows:
            print(f"  {name:<36}{bw:>10.1f}/s{nw:>9.1f}/s{nw / bw:>6.2f}x  |{bc:>9.1f}/s{nc:>8.1f}/s{nc / bc:>6.2f}x")
        e_new, e_old = [], []
        have_cli = shutil.which("ffmpeg") is not None
        for _ in range(args.repeat):
            e_new.append(rates(video.encode_h264, raw)[0])
            if have_cli:
                e_old.append(rates(lambda f: ffmpeg_cli_encode(f, tmp), raw)[0])
        print(f"encode 60-frame clips to H.264 mp4 bytes (veryfast, CRF 18, one thread), wall, best of {args.repeat}:")
        print(f"  PyAV in memory (egom2p.video.encode_h264): {max(e_new):.2f} clips/s")
        if have_cli:
            print(f"  ffmpeg CLI + temporary file (baseline):    {max(e_old):.2f} clips/s")
            print(f"  ratio PyAV / ffmpeg CLI: {max(e_new) / max(e_old):.2f}x")
        else:
            print("  ffmpeg CLI baseline: not measured (no ffmpeg executable on PATH; nothing in egom2p needs one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
