"""The ``egom2p`` command. Each subcommand lives in its own module under ``egom2p/commands/``.

A command module defines ``register(subparsers)`` which adds its parser and sets ``func`` (called
with the parsed arguments; its return value is the exit code). Modules are discovered, so adding a
command never edits this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egom2p",
        description="Egocentric multimodal data pipeline and EgoM2P model: render, curate, tokenize, train, predict.",
    )
    parser.add_argument("--version", action="version", version=f"egom2p {__version__}")
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
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
