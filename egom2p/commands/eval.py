"""``egom2p eval {camera,gaze,depth,rgb}``: run a task over evaluation clips and print the paper's tables.

    egom2p eval camera --ckpt runs/tiny/last --tokenizers tok/ --clips out/egogen.lance [--limit 50]
                       [--split val] [--out eval/]

One row per method on the same clips, scored by the same code (:mod:`egom2p.evaluation`, the task
table :mod:`egom2p.tasks.table`, the metrics :mod:`egom2p.metrics`): the model, the tokenizer round
trip of the ground truth (the ceiling: a model that generates the ground-truth tokens) and the
baselines:

* camera: static pose, constant velocity (given the first two ground-truth poses), mean training
  trajectory; ATE / RTE / RRE after the stated alignment (default Sim(3), Umeyama);
* gaze: centre prior, mean training gaze track; MSE of normalised coordinates over valid frames;
* depth: per-clip mean depth, mean training depth map; AbsRel and delta<1.25 after a sequence-level
  scale-and-shift alignment in inverse depth, on raw sensor returns only for sensor depth;
* rgb (from depth): mean training frame, nearest training frame by depth; PSNR, SSIM, LPIPS and FVD
  (LPIPS/FVD when their weights are found).

``--samples N`` adds the row "EgoM2P, mean of N samples": N samples per clip drawn at temperature 1 and
averaged in the target's geometry (poses: mean translation and chordal mean rotation), the point estimate
that minimises squared error, beside the paper's one decode. ``--expected`` adds the row "EgoM2P, expected
code": all target tokens queried in one pass and the tokenizer's decode of each token's expected code
(the probability-weighted mean code), a point estimate without sampling noise.

"Training" baselines use the train split of the given clips tables (else of the checkpoint's token DB
lineage); the notes under the table say which. Below the table: the factor of the model against the
best baseline on each main metric. Metrics are averaged over clips; "time/seq" is the wall time per
2-second clip. The table is printed, and written as JSON and markdown to --out.
"""

from __future__ import annotations

import os

from .. import metrics as M
from ..tasks import TASKS
from ._runner import add_runner_arguments, load_runner


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on clips: the paper's task tables with a ceiling and baselines")
    p.add_argument("task", choices=sorted(TASKS), help="camera | gaze | depth | rgb (depth -> RGB)")
    add_runner_arguments(p)
    p.add_argument("--clips", required=True, nargs="+", help="clips tables (DIR/<dataset>.lance) or directories of them")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most N clips")
    p.add_argument("--split", default=None, help="split to evaluate (default: every split but train, if any)")
    p.add_argument("--out", default=None, help="directory for eval_<task>.json and .md (default: ./eval)")
    p.add_argument("--alignment", default=M.DEFAULT_ALIGNMENT, choices=M.ALIGNMENTS,
                   help="camera trajectory alignment")
    p.add_argument("--batch-size", type=int, default=1, help="clips per model call (1 = the paper's per-sequence timing)")
    p.add_argument("--weights", default=None, help="directory of LPIPS/FVD weights (default $EGOM2P_WEIGHTS)")
    p.add_argument("--samples", type=int, default=1,
                   help="also score the mean of N samples per clip (drawn at temperature 1, averaged in the target's "
                        "geometry) as an extra row; default 1: only the paper's one decode")
    p.add_argument("--expected", action="store_true",
                   help="also score the decode of the expected code of each target token (one pass) as an extra row")
    p.add_argument("--train-limit", type=int, default=None,
                   help="training clips read for the baselines' statistics (default 512)")
    p.set_defaults(func=run_eval)


def run_eval(args) -> int:
    from ..errors import as_user_error
    from ..evaluation import (
        TRAIN_LIMIT, evaluate, format_comparison, format_table, select_clips, training_clips, write_report,
    )
    from ..tasks import get_task

    # errors (bad input, missing/damaged/foreign artefacts) are reported by egom2p.cli.main: one line on stderr, exit 2
    with as_user_error(ValueError):
        runner = load_runner(args)
        clips, split = select_clips(args.clips, args.task, args.split, args.limit)
        train, source = training_clips(get_task(args.task), args.clips, runner.checkpoint,
                                       limit=args.train_limit or TRAIN_LIMIT)
    print(f"egom2p eval {args.task}: {len(clips)} clips (split {split}) from {', '.join(args.clips)}; "
          f"registry {runner.registry.config}, device {args.device}")
    report = evaluate(runner, args.task, clips, alignment=args.alignment, batch_size=args.batch_size,
                      weights_dir=args.weights, train_clips=train, train_source=source, samples=args.samples,
                      expected=args.expected)
    report.settings.update({"ckpt": os.fspath(args.ckpt), "tokenizers": os.fspath(args.tokenizers),
                            "clips": list(args.clips), "split": split})
    print()
    print(format_table(report))
    for line in format_comparison(report):
        print(f"  > {line}")
    for n in report.notes:
        print(f"  * {n}")
    paths = write_report(report, args.out or "eval")
    print(f"\nwrote {paths['json']} and {paths['markdown']}")
    return 0
