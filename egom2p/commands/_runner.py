"""What ``egom2p predict`` and ``egom2p eval`` share: the model/tokenizer options and loading the runner."""

from __future__ import annotations


def add_runner_arguments(p) -> None:
    """--ckpt, --tokenizers, --device, --seed."""
    p.add_argument("--ckpt", required=True, help="training checkpoint (run directory or step directory)")
    p.add_argument("--tokenizers", required=True, help="directory with rgb/ depth/ gaze/ cam/ tokenizers")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input or a bad artefact: reported in one line, exit code 2."""
    from ..checkpoint import CheckpointError
    from ..tasks import TaskInputError
    from ..tokenizers import TokenizerError

    return (TaskInputError, FileNotFoundError, ValueError, CheckpointError, TokenizerError)


def load_runner(args):
    """The :class:`~egom2p.tasks.TaskRunner` of ``--ckpt`` and ``--tokenizers`` (raises :func:`user_errors`)."""
    from ..tasks import TaskRunner

    return TaskRunner.load(args.ckpt, args.tokenizers, device=args.device, seed=args.seed)
