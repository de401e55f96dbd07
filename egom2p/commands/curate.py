"""``egom2p curate DATASET --raw DIR --out DIR``: run the Prefect ``curate`` flow in this process.

Uses Prefect's ephemeral API (no server needed) unless ``PREFECT_API_URL`` points at a server,
and a local Ray unless ``RAY_ADDRESS`` points at a cluster. The same flow is deployed per dataset
in ``prefect.yaml`` (``prefect deployment run curate/<dataset>``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._flows import load_flow, local_run_env


def register(sub) -> None:
    from ..adapters import KNOWN_DATASETS
    from ..annotators import ANNOTATORS

    p = sub.add_parser("curate", help="curate a raw dataset into a clips table (Prefect flow on Ray Data)",
                       description="Split raw sequences into 2-second clips, annotate depth, standardize and write "
                                   "OUT/<dataset>.lance; failures go to OUT/<dataset>.quarantine.jsonl, the summary to "
                                   "OUT/<dataset>.summary.json. Re-running skips finished clips.")
    p.add_argument("dataset", help=f"dataset name ({', '.join(KNOWN_DATASETS)})")
    p.add_argument("--raw", required=True, help="raw root of the dataset (its adapter's layout)")
    p.add_argument("--out", required=True, help="output folder for the clips table, quarantine and summary")
    p.add_argument("--limit", type=int, default=None, help="curate at most N sequences")
    p.add_argument("--stride", type=int, default=60, help="frames between clip starts (default 60: back-to-back)")
    p.add_argument("--depth", choices=ANNOTATORS, default=None, help="depth annotator (default: the dataset's)")
    p.add_argument("--depth-checkpoint", default=None, help="checkpoint folder of a model depth annotator (rollingdepth)")
    p.add_argument("--depth-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra annotator option (value parsed as JSON when it can be), repeatable")
    p.add_argument("--size", type=int, default=256, help="side of the square standard image (default 256)")
    p.add_argument("--write-batch", type=int, default=8,
                   help="clips per Lance commit (default 8; a killed run loses at most the batch in flight)")
    p.add_argument("--annotate-actors", type=int, default=0, help="run annotation on N Ray actors (model annotators)")
    p.add_argument("--annotate-gpus", type=float, default=0.0, help="GPUs per annotation actor")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all; ignored with RAY_ADDRESS)")
    p.set_defaults(func=run)


def _option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise SystemExit(f"egom2p curate: --depth-option needs KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def run(args) -> int:
    local_run_env()
    options = dict(_option(o) for o in args.depth_option)
    if args.depth_checkpoint:
        options["checkpoint"] = args.depth_checkpoint
    curate = load_flow("curate")
    from egom2p.curate import CurateError

    try:
        summary = curate(dataset=args.dataset, raw=args.raw, out=args.out, limit=args.limit, stride=args.stride,
                         depth=args.depth, depth_options=options, size=args.size,
                         write_batch=args.write_batch, annotate_actors=args.annotate_actors, annotate_gpus=args.annotate_gpus,
                         num_cpus=args.num_cpus)
    except CurateError as e:
        print(f"egom2p curate: {e}", file=sys.stderr)
        return 2
    print(f"wrote {Path(args.out) / (args.dataset + '.summary.json')}")
    if summary["clips_written"] == 0 and summary["quarantined"] > 0 and summary["clips_skipped"] == 0:
        return 1
    return 0
