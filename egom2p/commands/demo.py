"""``egom2p demo``: the whole path on the embedded default data (see :mod:`egom2p.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    from ..demo import DemoConfig

    d = DemoConfig()
    p = sub.add_parser("demo", help="run render -> curate -> tokenizers -> tokenize -> train -> predict -> eval on synthetic data")
    add_world_arguments(p, d)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..demo import DemoConfig, run_demo

    run_demo(config_from_args(DemoConfig, args), args.egom2p_main)
    return 0


WORLD_FIELDS = ("out", "sequences", "seconds", "size", "seed", "jobs", "tokenizer_steps", "cam_velocity", "video_steps",
                "train_steps", "eval_limit", "samples", "expected")


def add_world_arguments(p, d) -> None:
    """The options ``demo`` and ``quality`` share (the embedded world and the step counts), defaults from ``d``."""
    p.add_argument("--out", type=Path, default=d.out, help=f"output folder (default {d.out})")
    p.add_argument("--sequences", type=int, default=d.sequences, help="rendered sequences (every 4th held out)")
    p.add_argument("--seconds", type=int, default=d.seconds, help="seconds per sequence")
    p.add_argument("--size", type=int, default=d.size, help="image side")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--jobs", type=int, default=d.jobs, help="cores: sequences rendered in parallel, video tokenizer threads")
    p.add_argument("--tokenizer-steps", type=int, default=d.tokenizer_steps, help="gaze/cam tokenizer steps")
    p.add_argument("--cam-velocity", type=float, default=d.cam_velocity,
                   help="weight of the camera tokenizer's motion (frame-to-frame) loss")
    p.add_argument("--video-steps", type=int, default=d.video_steps, help="video tokenizer steps")
    p.add_argument("--train-steps", type=int, default=d.train_steps,
                   help="EgoM2P tiny training steps (per point of a learning curve)")
    p.add_argument("--eval-limit", type=int, default=d.eval_limit, help="held-out clips per evaluation")
    p.add_argument("--samples", type=int, default=d.samples,
                   help="the evaluations also score the mean of this many samples per clip (1: only one decode)")
    p.add_argument("--expected", action=argparse.BooleanOptionalAction, default=d.expected,
                   help="the evaluations also score the decode of the expected code (egom2p eval --expected)")


def config_from_args(cls, args, **extra):
    """``cls`` (DemoConfig or a subclass) from the options of :func:`add_world_arguments` (and ``extra``)."""
    return cls(**{f: getattr(args, f) for f in WORLD_FIELDS}, **extra)
