"""``egom2p tokenizer train {gaze,cam,...,video} --clips PATH... --out DIR [KEY=VALUE ...]``: train a tokenizer.

Writes ``DIR/<modality>/`` for a sequence modality (gaze, cam, any registered one) or ``DIR/rgb/`` + ``DIR/depth/`` (config.json + model.safetensors +
eval.png), prints progress and ends with the evaluation (camera ATE/RRE, gaze MSE, video PSNR/SSIM,
codebook usage and perplexity). ``egom2p tokenizer info DIR`` lists the checkpoints of a directory.
"""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("tokenizer", help="train and inspect tokenizers (gaze/cam VQ-VAE, FSQ video)")
    tsub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    t = tsub.add_parser("train", help="train a tokenizer on clips tables and evaluate it",
                        description="Train the gaze or cam Transformer VQ-VAE, or the causal FSQ video tokenizer "
                                    "(RGB and depth), on clips tables; overrides are typed KEY=VALUE of the "
                                    "tokenizer's config (registry, size, steps, batch_size, lr, weight_decay, warmup, "
                                    "seed, device, threads, eval_fraction, max_clips, log_every) or model.FIELD=VALUE "
                                    "(fields of the VQ-VAE / FSQ config), composed with Hydra. --print-config shows "
                                    "the composed config without reading anything.")
    t.add_argument("which", metavar="{gaze,cam,...,video}",
                   help="a sequence modality of the registry (its VQ-VAE) or video (the FSQ video tokenizer)")
    t.add_argument("--clips", nargs="+", help="clips tables (DIR/<dataset>.lance); required unless --print-config")
    # --out takes the directory and then any KEY=VALUE overrides that follow it (argparse cannot put a
    # "*" positional after options), so `--out DIR steps=500 size=base` works as documented.
    t.add_argument("--out", nargs="+", metavar="DIR",
                   help="tokenizer directory (checkpoints go to OUT/<modality>/), then optional overrides")
    # like --out, --print-config takes the KEY=VALUE overrides that follow it
    t.add_argument("--print-config", nargs="*", metavar="KEY=VALUE", default=None,
                   help="print the composed, typed config (with any overrides) and exit; reads nothing")
    t.add_argument("overrides", nargs="*", help="KEY=VALUE, e.g. steps=500 size=base registry=base model.depth=4")
    t.set_defaults(func=run_train)
    i = tsub.add_parser("info", help="list the tokenizer checkpoints of a directory")
    i.add_argument("dir")
    i.set_defaults(func=run_info)


def _fmt(v) -> str:
    return f"{v:.5g}" if isinstance(v, float) else str(v)


def run_train(args) -> int:
    import sys
    from dataclasses import asdict

    from ..config import ConfigError, tokenizer_config
    from ..modality import names
    from ..tokenizers.train import train_sequence, train_video

    def fail(msg: str) -> int:
        print(f"egom2p tokenizer train: error: {msg}", file=sys.stderr)
        return 2

    given = list(args.clips or []) + list(args.out or []) + list(args.print_config or []) + list(args.overrides)
    overrides = [a for a in given if "=" in a]
    clips = [c for c in (args.clips or []) if "=" not in c]
    outs = [o for o in (args.out or []) if "=" not in o]
    try:  # the config first: a wrong kind, key or type is refused before any clips table is opened
        cfg = tokenizer_config(args.which, overrides)
    except ConfigError as e:
        return fail(str(e))
    if args.print_config is not None:
        import yaml

        print(yaml.safe_dump(asdict(cfg), sort_keys=False).rstrip())
        return 0
    if not clips or len(outs) != 1:
        return fail("give --clips PATH... and --out DIR (then any KEY=VALUE override)")
    out = outs[0]
    if args.which == "video":
        metrics = train_video(clips, out, cfg)
        print("\nevaluation (video tokenizer):")
        for m in names("video"):
            if m in metrics:
                print(f"  {m}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in metrics[m].items()))
            print(f"  checkpoint: {metrics[f'{m}_checkpoint']}")
    else:
        metrics = train_sequence(args.which, clips, out, cfg)
        print(f"\nevaluation ({args.which} tokenizer):")
        for k, v in metrics.items():
            print(f"  {k}: {_fmt(v)}")
    return 0


def run_info(args) -> int:
    from ..tokenizers import load_tokenizers

    toks = load_tokenizers(args.dir)
    for m, t in toks.items():
        print(f"{m}: {t.identity['kind']} registry={t.registry.config} tokens={t.spec.num_tokens} "
              f"vocab={t.spec.vocab_size} sha256={t.identity['sha256']}")
        try:
            cfg = json.loads((Path(args.dir) / m / "config.json").read_text())
            if cfg.get("eval"):
                print("  eval: " + ", ".join(f"{k}={_fmt(v)}" for k, v in cfg["eval"].items()))
        except (OSError, ValueError):
            pass
    return 0
