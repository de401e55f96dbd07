"""The ``tokenize`` Prefect flow: clips tables -> versioned token DB ``tokens/<name>.lance``, on the stage runner.

Tasks of plain parameters (the run's config as a dict, a clips table path): prepare (load the
tokenizers, check every clips table and the existing DB, register the tokenizers in the DB; fail
fast) -> one task per clips table (plan the clips still missing from the DB, read them with Ray
Data's Lance reader at the pinned version, tokenize them on actors - GPU actors when the cluster
has GPUs - and insert the rows from the workers, ``commit_every`` clips per Lance version, each row
carrying its lineage) -> finalize (compaction, clip_id index) -> summary (a markdown artifact and
the console). Every task is retried on failure (all writes are idempotent), except on bad input.
Re-running tokenizes only missing clips.

Run in-process: ``egom2p tokenize --clips DIR/egogen.lance --tokenizers DIR --out tokens/v1.lance`` or
``tokenize(clips=[...], tokenizers=..., out=...)``; deployed: ``prefect deployment run tokenize/default``
with ``-p clips='["data/clips/egogen.lance"]' -p tokenizers=checkpoints/tokenizers -p out=tokens/v1.lance``.
"""

from __future__ import annotations

import dataclasses

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from egom2p.flows import TASK_RETRIES, progress_artifact, retry_unless_bad_input
from egom2p.flows.deployments import apply_deployment_env
from egom2p.runconfig import config_flow
from egom2p.runner import Runner
from egom2p.tokenize_config import TokenizeConfig
from egom2p.tokenizers.stage import TokenizeRun

RETRY = dict(cache_policy=NO_CACHE, retries=TASK_RETRIES, retry_delay_seconds=2, retry_condition_fn=retry_unless_bad_input)


def _run(cfg: dict) -> TokenizeRun:
    return TokenizeRun(TokenizeConfig(**cfg), log=get_run_logger().info)


@task(name="prepare", **RETRY)
def prepare(cfg: dict) -> None:
    _run(cfg).prepare()


@task(name="tokenize-table", **RETRY)
def tokenize_table(cfg: dict, clips_path: str) -> dict:
    run = _run(cfg)
    run.load()
    progress = progress_artifact(f"clips of {clips_path} tokenized")
    res = run.tokenize_table(clips_path, progress)
    progress(1, 1)
    return res.__dict__


@task(name="finalize", **RETRY)
def finalize(cfg: dict) -> int | None:
    """Compact the DB's small fragments and update its clip_id index."""
    return _run(cfg).finalize()


@task(name="summary", **RETRY)
def summary(cfg: dict, tables: list[dict]) -> dict:
    run = _run(cfg)
    s = run.summary()
    s["tables"] = tables
    s["added"] = sum(t["added"] for t in tables)
    mods = list(next(iter((s.get("counts") or {}).values()), {}))  # the DB registry's modalities, in order
    lines = [f"# Token DB `{s['out']}`", "", f"version {s.get('version')}, {s.get('rows')} clips; "
             f"{s['added']} added by this run", "", "| dataset | " + " | ".join(mods) + " |",
             "|---|" + "---|" * len(mods)]
    for ds, c in (s.get("counts") or {}).items():
        lines.append(f"| {ds} | " + " | ".join(str(c.get(m, 0)) for m in mods) + " |")
    create_markdown_artifact("\n".join(lines), key="tokenize-summary", description="token DB coverage")
    print("\n".join(lines), flush=True)
    return s


@config_flow(TokenizeConfig, name="tokenize", log_prints=True)
def tokenize(config: TokenizeConfig) -> dict:
    """Tokenize the clips tables ``clips`` with the checkpoints in ``tokenizers`` into the token DB ``out``.

    The parameters are the fields of :class:`egom2p.tokenize_config.TokenizeConfig` (the same as
    ``egom2p tokenize``'s flags); its cheap checks run first.
    """
    apply_deployment_env()
    config.check()
    cfg = dataclasses.asdict(config)
    prepare(cfg)
    with Runner("ray" if config.use_ray else "local", config.num_cpus) as runner:  # one local Ray for every task
        runner.ensure_started()
        tables = [tokenize_table(cfg, p) for p in config.clips]
        finalize(cfg)
        return summary(cfg, tables)
