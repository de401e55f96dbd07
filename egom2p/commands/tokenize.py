"""``egom2p tokenize --clips PATH... --tokenizers DIR --out tokens/NAME.lance``: run the ``tokenize`` flow here.

Uses Prefect's ephemeral API unless ``PREFECT_API_URL`` points at a server, and a local Ray unless
``RAY_ADDRESS`` points at a cluster. Re-running tokenizes only the clips missing from the DB; every
commit is a new Lance version with its lineage.
"""

from __future__ import annotations

import sys

from ._flows import load_flow, local_run_env


def register(sub) -> None:
    p = sub.add_parser("tokenize", help="tokenize clips tables into a versioned token DB (Prefect flow on Ray Data)")
    p.add_argument("--clips", nargs="+", required=True, help="clips tables (DIR/<dataset>.lance)")
    p.add_argument("--tokenizers", required=True, help="tokenizer directory with rgb/ depth/ gaze/ cam/ checkpoints")
    p.add_argument("--out", required=True, help="token DB, e.g. tokens/v1.lance (created or appended to)")
    p.add_argument("--modalities", nargs="+", default=None, help="subset of the tokenizers to run")
    p.add_argument("--batch-size", type=int, default=8, help="clips per actor call")
    p.add_argument("--commit-every", type=int, default=256, help="clips per Lance commit (version)")
    p.add_argument("--limit", type=int, default=None, help="at most N new clips per clips table")
    p.add_argument("--device", default="auto", help="auto (GPU actors when a GPU is present), cpu or cuda")
    p.add_argument("--actors", type=int, default=None, help="number of tokenizer actors")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (ignored with RAY_ADDRESS)")
    p.add_argument("--no-ray", action="store_true", help="tokenize in this process instead of Ray actors")
    p.set_defaults(func=run)


def run(args) -> int:
    local_run_env()
    flow = load_flow("tokenize")
    from ..clips import ClipsTableError
    from ..tokendb import TokenDBError
    from ..tokenizers import TokenizerError
    from ..tokenizers.cosmos import CosmosCheckpointError

    try:
        s = flow(clips=args.clips, tokenizers=args.tokenizers, out=args.out, modalities=args.modalities,
                 batch_size=args.batch_size, commit_every=args.commit_every, limit=args.limit, device=args.device,
                 actors=args.actors, num_cpus=args.num_cpus, use_ray=not args.no_ray)
    except (ClipsTableError, TokenDBError, TokenizerError, CosmosCheckpointError, ValueError) as e:
        print(f"egom2p tokenize: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: version {s.get('version')}, {s.get('rows')} clips ({s['added']} added)")
    return 0
