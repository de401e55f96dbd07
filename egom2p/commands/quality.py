"""``egom2p quality``: a larger embedded world and a learning curve (see :mod:`egom2p.quality`)."""

from __future__ import annotations

from .demo import add_world_arguments, config_from_args


def register(sub) -> None:
    from ..quality import QualityConfig

    d = QualityConfig()
    p = sub.add_parser("quality", help="learning curve: tiny EgoM2P on 1/4, 1/2 and all of a larger synthetic world")
    add_world_arguments(p, d)
    p.add_argument("--fractions", type=float, nargs="+", default=list(d.fractions),
                   help="shares of the training sequences (default 0.25 0.5 1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import EgoM2PError
    from ..quality import QualityConfig, run_quality

    if not args.fractions or any(not 0 < f <= 1 for f in args.fractions):
        raise EgoM2PError(f"--fractions must be in (0, 1], got {args.fractions}")
    run_quality(config_from_args(QualityConfig, args, fractions=tuple(args.fractions)), args.egom2p_main)
    return 0
