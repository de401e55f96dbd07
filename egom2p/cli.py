"""The ``egom2p`` command. Each subcommand lives in its own module under ``egom2p/commands/``.

A command module defines ``register(subparsers)`` which adds its parser and sets ``func`` (called
with the parsed arguments; its return value is the exit code). Modules are discovered, so adding a
command never edits this file; a module is named like its command, so ``egom2p CMD`` imports only
``egom2p/commands/CMD.py`` (bad input is reported before anything heavy, e.g. torch, is imported).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__, commands


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
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
