"""What ``egom2p predict`` and ``egom2p eval`` share: the model/tokenizer options and loading the runner."""

from __future__ import annotations

from ..integrity import ALLOW_FOREIGN_FLAG


def add_runner_arguments(p) -> None:
    """--ckpt, --tokenizers, --device, --seed, --allow-foreign-tokenizers."""
    p.add_argument("--ckpt", required=True, help="training checkpoint (run directory or step directory)")
    p.add_argument("--tokenizers", required=True, help="directory with rgb/ depth/ gaze/ cam/ tokenizers")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument(ALLOW_FOREIGN_FLAG, action="store_true",
                   help="use tokenizers other than those the checkpoint was trained with (refused by default)")


def load_runner(args):
    """The verified :class:`~egom2p.tasks.TaskRunner` of ``--ckpt`` and ``--tokenizers``."""
    from ..tasks import TaskRunner

    return TaskRunner.load(args.ckpt, args.tokenizers, device=args.device, seed=args.seed,
                           allow_foreign_tokenizers=args.allow_foreign_tokenizers)
