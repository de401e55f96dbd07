"""The ``egom2p`` command. Each subcommand lives in its own module under ``egom2p/commands/``.

A command module defines ``register(subparsers)`` which adds its parser and sets ``func`` (called
with the parsed arguments; its return value is the exit code). Modules are discovered, so adding a
command never edits this file.

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egom2p",
        description="Egocentric multimodal data pipeline and EgoM2P model: render, curate, tokenize, train, predict.",
    )
    parser.add_argument("--version", action="version", version=f"egom2p {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of input and artefact errors (also EGOM2P_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
