"""The ``egom2p`` command. Each subcommand lives in its own module under ``egom2p/commands/``.

A command module defines ``register(subparsers)`` which adds its parser and sets ``func`` (called
with the parsed arguments; its return value is the exit code). Modules are discovered, so adding a
command never edits this file; a module is named like its command, so ``egom2p CMD`` imports only
``egom2p/commands/CMD.py`` (bad input is reported before anything heavy, e.g. torch, is imported).

Errors: a command raises :class:`egom2p.errors.EgoM2PError` (or a subclass) for bad input and for
missing, damaged or foreign artefacts; :func:`main` prints it as ``egom2p <command>: <message>``,
one line on stderr, and exits 2 (``--debug`` or ``EGOM2P_DEBUG=1``: the traceback instead).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__, commands
from .errors import debug_enabled, hide_user_error_tracebacks, is_user_error, report


class Parser(argparse.ArgumentParser):
    """Usage errors in one line on stderr (exit code 2), pointing at ``--help``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of the command ``only`` (its module alone is imported)."""
    parser = Parser(
        prog="egom2p",
        description="Egocentric multimodal data pipeline and EgoM2P model: render, curate, tokenize, train, predict.",
    )
    parser.add_argument("--version", action="version", version=f"egom2p {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of input and artefact errors (also EGOM2P_DEBUG=1)")
    # a command that runs other commands (demo, quality) is handed this entry instead of importing this module
    parser.set_defaults(egom2p_main=main)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))
    for name in [only] if only in names else names:
        module = importlib.import_module(f"{commands.__name__}.{name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(only=argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    debug = debug_enabled(args.debug)
    if not debug:
        hide_user_error_tracebacks()
    try:
        return int(args.func(args) or 0)
    except SystemExit as e:  # a command's own one-line refusal, raise SystemExit("egom2p x: ...")
        if isinstance(e.code, str):
            return report(prog_of(args), e.code)
        raise
    except Exception as e:
        if debug or not is_user_error(e):
            raise
        return report(prog_of(args), e)


def prog_of(args) -> str:
    """``egom2p <command> [<action>]`` of parsed arguments (the prefix of error lines)."""
    words = ["egom2p", args.command]
    for k, v in vars(args).items():
        if k.endswith("_command") and isinstance(v, str):
            words.append(v)
    return " ".join(words)


if __name__ == "__main__":
    sys.exit(main())
