"""``egom2p curate DATASET --raw DIR --out DIR``: run the Prefect ``curate`` flow in this process.

The flags are the fields of :class:`egom2p.curate.config.CurateConfig` (also the flow's parameters and
the deployments' defaults). Bad input (unknown dataset, a missing or unreadable raw root, a raw root
without a sequence of the dataset, a bad option, a missing checkpoint, an output another run is
writing) is reported in one line on stderr with exit code 2 before Prefect or Ray start. Then the
flow runs with Prefect's ephemeral API (unless ``PREFECT_API_URL`` points at a server) and a local
Ray (unless ``RAY_ADDRESS`` points at a cluster); processes started for the run end with it, even
when it is killed (:mod:`egom2p.commands._flows`).
"""

from __future__ import annotations

from pathlib import Path

from ._flows import error, run_flow


def register(sub) -> None:
    from ..curate.config import CurateConfig
    from ..runconfig import add_arguments

    p = sub.add_parser("curate", help="curate a raw dataset into a clips table (Prefect flow on Ray Data)",
                       description="Split raw sequences into 2-second clips, annotate depth, standardize and write "
                                   "OUT/<dataset>.lance; failures go to OUT/<dataset>.quarantine.jsonl, the summary to "
                                   "OUT/<dataset>.summary.json. Re-running skips finished clips.")
    add_arguments(p, CurateConfig)
    p.set_defaults(func=run)


def preflight(args):
    """The run's config, checked: options, dataset, depth annotator, raw root (with at least one
    sequence of the dataset), output. Raises ConfigError or CurateError."""
    from ..adapters.base import SourceError
    from ..clips import existing_ids
    from ..curate.config import CurateConfig, CurateError
    from ..curate.stages import discover
    from ..runconfig import from_args

    config = from_args(CurateConfig, args)
    adapter = config.check()
    try:
        discover(adapter, config.raw, config.limit)
    except SourceError as e:
        raise CurateError(str(e)) from None
    existing_ids(config.table_path, options=config.options)  # an existing output table must be readable
    return config


def run(args) -> int:
    from ..curate.config import CurateError
    from ..runconfig import ConfigError

    try:
        config = preflight(args)
        summary = run_flow("curate", config)
    except (ConfigError, CurateError) as e:
        return error("curate", e)
    print(f"wrote {Path(config.out) / (config.dataset + '.summary.json')}")
    if summary["clips_written"] == 0 and summary["quarantined"] > 0 and summary["clips_skipped"] == 0:
        return 1
    return 0
