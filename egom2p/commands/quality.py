"""``egom2p quality``: a larger embedded world and a learning curve (see :mod:`egom2p.quality`)."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    from ..quality import QualityConfig

    d = QualityConfig()
    p = sub.add_parser("quality", help="learning curve: tiny EgoM2P on 1/4, 1/2 and all of a larger synthetic world")
    p.add_argument("--out", type=Path, default=d.out, help=f"output folder (default {d.out})")
    p.add_argument("--sequences", type=int, default=d.sequences, help="rendered sequences (every 4th held out)")
    p.add_argument("--seconds", type=int, default=d.seconds, help="seconds per sequence")
    p.add_argument("--size", type=int, default=d.size, help="image side")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--jobs", type=int, default=d.jobs, help="sequences rendered in parallel")
    p.add_argument("--tokenizer-steps", type=int, default=d.tokenizer_steps, help="gaze/cam tokenizer steps")
    p.add_argument("--video-steps", type=int, default=d.video_steps, help="video tokenizer steps")
    p.add_argument("--train-steps", type=int, default=d.train_steps, help="EgoM2P tiny steps per point of the curve")
    p.add_argument("--eval-limit", type=int, default=d.eval_limit, help="held-out clips per evaluation")
    p.add_argument("--fractions", type=float, nargs="+", default=list(d.fractions),
                   help="shares of the training sequences (default 0.25 0.5 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..quality import QualityConfig, run_quality

    if not args.fractions or any(not 0 < f <= 1 for f in args.fractions):
        print("egom2p quality: --fractions must be in (0, 1]")
        return 2
    run_quality(QualityConfig(out=args.out, sequences=args.sequences, seconds=args.seconds, size=args.size,
                              seed=args.seed, jobs=args.jobs, tokenizer_steps=args.tokenizer_steps,
                              video_steps=args.video_steps, train_steps=args.train_steps, eval_limit=args.eval_limit,
                              fractions=tuple(args.fractions)), args.egom2p_main)
    return 0
