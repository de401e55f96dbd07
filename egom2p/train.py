"""``egom2p-train``: multimodal masked pretraining on a token database (see the training issue)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="egom2p-train", description="Train EgoM2P on a Lance token database.")
    p.add_argument("--db", required=True, help="token database, e.g. tokens/v3.lance")
    p.add_argument("overrides", nargs="*", help="Hydra-style overrides, e.g. model=tiny train.steps=200")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"egom2p-train: training is not available in this build (db={args.db})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
