"""Commit cost vs table size: inserting batches of 8 small synthetic clips into clips tables of 1K, 10K and
100K rows with the workers' writer (:func:`egom2p.clips.write_table`: exactly-once merge-insert on the
``clip_id`` primary key, BTREE index). Target: the per-commit time at 100K rows within 1.5x of that at
1K rows (the baseline, measured in the same run).

The tables stand for ones that earlier runs left behind: compacted, with the ``clip_id`` index up to
date (what :func:`egom2p.clips.finalize` does at the end of every run). For comparison the writer
this project used before (read every clip id of the table, then append) is timed on the same
tables: its cost grows with the table.

    python benchmarks/bench_commit.py [--sizes 1000 10000 100000] [--commits 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from egom2p import tables
from egom2p.clips import CLIPS_SCHEMA, existing_ids, finalize, write_table
from egom2p.modalities import CLIP_FRAMES

BATCH = 8


def synthetic_rows(prefix: str, n: int, seed: int = 0) -> pa.Table:
    """``n`` small clips-table rows (a 512-byte stand-in for the mp4, real gaze and camera arrays)."""
    rng = np.random.default_rng(seed)
    ids = [f"synthetic/{prefix}/{i:08d}" for i in range(n)]
    cam = np.tile(np.eye(4, dtype=np.float32).reshape(-1), CLIP_FRAMES).tolist()
    cols = {
        "clip_id": ids, "dataset": ["synthetic"] * n, "sequence": [prefix] * n, "split": ["train"] * n,
        "start_frame": list(range(n)), "fps": [30] * n, "num_frames": [CLIP_FRAMES] * n, "width": [64] * n,
        "height": [64] * n, "intrinsics": [[50.0, 50.0, 32.0, 32.0]] * n, "camera_model": ["pinhole"] * n,
        "distortion": [[]] * n, "is_gray": [False] * n, "frame_valid": [[True] * CLIP_FRAMES] * n,
        "rgb_mp4": [rng.bytes(512) for _ in range(n)], "depth_f16": [None] * n, "depth_source": [None] * n,
        "depth_range": [None] * n, "depth_raw_valid": [None] * n, "gaze": [rng.random(2 * CLIP_FRAMES, dtype=np.float32).tolist()] * n,
        "gaze_valid": [[True] * CLIP_FRAMES] * n, "cam": [cam] * n, "provenance": ["{}"] * n,
    }
    return pa.table(cols, schema=CLIPS_SCHEMA)


def build(path: Path, n: int) -> None:
    step = 20_000
    for i in range(0, n, step):
        write_table(path, synthetic_rows(f"base{i // step}", min(step, n - i), seed=i))
    finalize(path)


def time_commits(path: Path, commits: int, tag: str, writer) -> list[float]:
    out = []
    for k in range(commits):
        batch = synthetic_rows(f"{tag}{k:04d}", BATCH, seed=k)
        t0 = time.perf_counter()
        writer(path, batch)
        out.append(time.perf_counter() - t0)
    return out


def old_writer(path: Path, batch: pa.Table) -> None:
    """The writer before issue 13: read every id of the table, drop known ones, append."""
    import lance

    have = existing_ids(path)
    keep = [i for i, c in enumerate(batch.column("clip_id").to_pylist()) if c not in have]
    lance.write_dataset(batch.take(pa.array(keep, pa.int64())), str(path), schema=CLIPS_SCHEMA, mode="append")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--commits", type=int, default=20, help="commits of 8 clips timed per table (median reported)")
    args = ap.parse_args()
    td = Path(tempfile.mkdtemp(prefix="bench_commit_"))
    try:
        for n in args.sizes:
            t = time.perf_counter()
            build(td / f"t{n}.lance", n)
            shutil.copytree(td / f"t{n}.lance", td / f"old{n}.lance")
            print(f"built a compacted, indexed clips table of {n} rows in {time.perf_counter() - t:.1f} s", flush=True)
        # round robin over sizes and writers, so load changes of the (shared) machine hit every cell alike
        new: dict[int, list[float]] = {n: [] for n in args.sizes}
        old: dict[int, list[float]] = {n: [] for n in args.sizes}
        per_round = 2
        for r in range(max(1, args.commits // per_round)):
            for n in args.sizes:
                new[n] += time_commits(td / f"t{n}.lance", per_round, f"new{r}-", write_table)
                old[n] += time_commits(td / f"old{n}.lance", per_round, f"old{r}-", old_writer)
        for n in args.sizes:
            assert len(tables.read_keys(td / f"t{n}.lance")) == n + BATCH * len(new[n])
        new = {n: statistics.median(v) for n, v in new.items()}
        old = {n: statistics.median(v) for n, v in old.items()}
        base = args.sizes[0]
        print(f"\ninserting {BATCH} clips per commit, median of {args.commits} commits per table size")
        print(f"{'rows in table':>14} | {'this writer (ms)':>17} | {'ratio to ' + str(base):>12} | "
              f"{'old writer (ms)':>16} | {'ratio to ' + str(base):>12}")
        for n in args.sizes:
            print(f"{n:>14} | {1000 * new[n]:>17.1f} | {new[n] / new[base]:>11.2f}x | {1000 * old[n]:>16.1f} | "
                  f"{old[n] / old[base]:>11.2f}x")
        top = args.sizes[-1]
        ok = new[top] / new[base] <= 1.5
        print(f"\nper-commit time at {top} rows / at {base} rows: {new[top] / new[base]:.2f}x (target <= 1.50x): "
              f"{'met' if ok else 'NOT met'}")
        return 0
    finally:
        shutil.rmtree(td, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
