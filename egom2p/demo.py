"""The end-to-end demo on the embedded default data (the README's main command, ``make demo``).

render -> curate -> train tokenizers (tiny) -> tokenize -> train EgoM2P (tiny) -> predict -> eval.

Every step runs the real ``egom2p`` / ``egom2p-train`` command line in this process, printed as a
user would type it, so the demo doubles as a walkthrough. Steps whose outputs already exist are
skipped on a re-run (each command is itself resumable), so an interrupted demo continues.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class DemoConfig:
    out: Path = Path("demo_out")
    # Sized to finish in ~11 min on 2 CPU cores (measured: render 19 s, curate 33 s, cam/gaze tokenizers
    # 26 s each, video tokenizer 205 s, tokenize 19 s, EgoM2P 294 s, predict + 4 evals 15 s).
    sequences: int = 12  # rendered egogen sequences (every 4th is held out as "val" by the adapter)
    seconds: int = 8  # seconds per sequence -> 4 clips each
    size: int = 128  # rendered and standard image side
    seed: int = 0
    tokenizer_steps: int = 1000  # gaze / cam VQ-VAE steps
    video_steps: int = 500  # FSQ video tokenizer steps
    train_steps: int = 1500  # EgoM2P tiny steps
    eval_limit: int = 12


def _run(argv: list[str], train: bool = False) -> None:
    name = "egom2p-train" if train else "egom2p"
    print(f"\n$ {name} {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    if train:
        from .train import main as entry
    else:
        from .cli import main as entry
    rc = entry(argv)
    if rc:
        raise SystemExit(f"demo step failed (exit {rc}): {name} {shlex.join(argv)}")
    print(f"[demo] done in {time.perf_counter() - t0:.1f} s", flush=True)


def run_demo(cfg: DemoConfig) -> dict:
    out = Path(cfg.out)
    raw, clips, toks = out / "raw", out / "clips", out / "tokenizers"
    db, run_dir, pred, evals = out / "tokens" / "demo.lance", out / "runs" / "tiny", out / "predict", out / "eval"
    t_start = time.perf_counter()

    _run(["render", "egogen", "--out", str(raw), "--sequences", str(cfg.sequences), "--seconds", str(cfg.seconds),
          "--seed", str(cfg.seed), "--size", str(cfg.size), "--preview"])
    _run(["curate", "egogen", "--raw", str(raw), "--out", str(clips), "--size", str(cfg.size)])
    table = clips / "egogen.lance"
    _run(["clips", "info", str(table)])
    for kind, steps in (("cam", cfg.tokenizer_steps), ("gaze", cfg.tokenizer_steps), ("video", cfg.video_steps)):
        done = toks / ("rgb" if kind == "video" else kind) / "config.json"
        if done.exists():
            print(f"\n[demo] tokenizer {kind} exists ({done.parent}), skipped")
            continue
        _run(["tokenizer", "train", kind, "--clips", str(table), "--out", str(toks), "registry=tiny", "size=tiny",
              f"steps={steps}", f"seed={cfg.seed}"])
    _run(["tokenize", "--clips", str(table), "--tokenizers", str(toks), "--out", str(db)])
    _run(["db", "info", str(db)])
    if not (run_dir / "latest").exists() and not any(run_dir.glob("step_*")):
        _run(["--db", str(db), "--out", str(run_dir), "model=tiny", f"train.steps={cfg.train_steps}",
              f"seed={cfg.seed}"], train=True)
    else:
        print(f"\n[demo] model run exists ({run_dir}), skipped")

    held_out = _first_val_sequence(raw)
    gt = _ground_truth_tum(held_out, pred / "camera_gt.tum")
    _run(["predict", "camera", "--ckpt", str(run_dir), "--tokenizers", str(toks), "--video", str(held_out / "rgb.mp4"),
          "--out", str(pred / "camera"), "--gt", str(gt)])
    results = {}
    for task in ("camera", "gaze", "depth", "rgb"):
        _run(["eval", task, "--ckpt", str(run_dir), "--tokenizers", str(toks), "--clips", str(table), "--split", "val",
              "--limit", str(cfg.eval_limit), "--out", str(evals)])
        f = evals / f"eval_{task}.json"
        if f.exists():
            results[task] = json.loads(f.read_text())

    minutes = (time.perf_counter() - t_start) / 60
    print(f"""
[demo] finished in {minutes:.1f} min. Where to look:
  renders + previews : {raw}/*/preview.png
  clips table        : {table}   (egom2p clips info {table})
  tokenizers         : {toks}
  token DB           : {db}   (egom2p db info {db})
  model run          : {run_dir}   (tensorboard --logdir {run_dir})
  camera prediction  : {pred / 'camera'}
  eval tables        : {evals}/eval_*.md
  3D viewer          : egom2p view {evals}   (or {pred / 'camera'}, {table}; --save FILE.rrd)
  notebooks          : notebooks/inspect_clips.ipynb, inspect_tokens.ipynb, predictions.ipynb (defaults point here)
  Prefect UI         : http://127.0.0.1:4200 if you started a server (scripts/prefect_local.sh)""")
    return results


def _ground_truth_tum(sequence: Path, path: Path) -> Path:
    """The rendered sequence's camera trajectory (OpenCV axes, relative to its first frame) as a TUM file."""
    from .adapters import get_adapter
    from .geometry import relative_to_first
    from .modalities import CLIP_FPS
    from .tasks import write_tum

    adapter = get_adapter("egogen")
    ref = next(r for r in adapter.discover(sequence.parent) if Path(r.path) == sequence)
    c2w = adapter.load(ref).c2w
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tum(path, np.arange(len(c2w)) / CLIP_FPS, relative_to_first(c2w))
    return path


def _first_val_sequence(raw: Path) -> Path:
    from .adapters import get_adapter

    refs = get_adapter("egogen").discover(raw)
    val = [r for r in refs if r.split == "val"] or refs
    return Path(val[0].path)
