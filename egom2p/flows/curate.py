"""The ``curate`` Prefect flow: raw dataset -> clips table, on the stage runner (Ray Data by default).

Each step is a Prefect task of plain parameters (the run's config as a dict, sequence refs, work
chunks, the run id), so task retries re-run real work and the UI shows it: prepare (fail fast,
create the table) -> discover -> split -> annotate+standardize+encode+write (in the workers; the
task tallies their status rows) -> finalize (compaction, clip_id index) -> summarize (JSON + PNG
beside the table, a markdown artifact, the console). Every task is retried on failure (all writes
are idempotent), except on bad input. Progress: a Prefect progress artifact, log lines and a
console bar. The flow holds the run lock (local outputs) and the local Ray for its tasks.

Run in-process: ``egom2p curate egogen --raw DIR --out DIR`` or ``curate(dataset=..., raw=..., out=...)``;
deployed: ``prefect deployment run curate/egogen -p raw=DIR -p out=DIR`` (see prefect.yaml).
"""

from __future__ import annotations

import time
import uuid

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from egom2p.curate import CurateConfig
from egom2p.curate import pipeline as steps
from egom2p.curate.quarantine import QuarantineLog
from egom2p.curate.stages import ref_from_json, ref_to_json
from egom2p.flows import TASK_RETRIES, progress_artifact, retry_unless_bad_input
from egom2p.flows.deployments import apply_deployment_env
from egom2p.runconfig import config_flow
from egom2p.runner import Runner

RETRY = dict(cache_policy=NO_CACHE, retries=TASK_RETRIES, retry_delay_seconds=2, retry_condition_fn=retry_unless_bad_input)


def _config(cfg: dict) -> CurateConfig:
    return CurateConfig(**cfg)


@task(name="prepare", **RETRY)
def prepare(cfg: dict) -> dict:
    """Fail fast and create the clips table; returns the config with the depth annotator resolved."""
    return steps.prepare(_config(cfg)).to_dict()


@task(name="discover", **RETRY)
def discover(cfg: dict, run_id: str) -> dict:
    """The sequences to split (refs as JSON); unusable ones are quarantined."""
    config = _config(cfg)
    q = QuarantineLog(config.quarantine_path, run_id, config.options)
    refs, seen = steps.discover_sequences(config, q)
    get_run_logger().info("discover: %d sequences under %s (%d quarantined)", seen, config.raw, seen - len(refs))
    return {"refs": [ref_to_json(r) for r in refs], "seen": seen, "quarantined_by_stage": dict(q.by_stage)}


@task(name="split", **RETRY)
def split(cfg: dict, refs: list[str], run_id: str) -> dict:
    config = _config(cfg)
    q = QuarantineLog(config.quarantine_path, run_id, config.options)
    plan = steps.split_sequences(config, [ref_from_json(r) for r in refs], Runner(config.executor, config.num_cpus), q)
    get_run_logger().info("split: %d windows in %d sequences (%d failed); %d already done, %d to curate in %d tasks",
                          plan.windows, len(refs) - plan.sequences_failed, plan.sequences_failed, plan.skipped,
                          plan.planned, len(plan.chunks))
    return {**plan.to_dict(), "quarantined_by_stage": dict(q.by_stage)}


@task(name="annotate-standardize-encode-write", **RETRY)
def process(cfg: dict, plan: dict, run_id: str) -> dict:
    config = _config(cfg)
    q = QuarantineLog(config.quarantine_path, run_id, config.options)
    progress = progress_artifact(f"clips of {config.dataset} done", key=f"curate-progress-{config.dataset.replace('_', '-')}")
    written = steps.curate_chunks(config, steps.Plan.from_dict(plan).chunks, Runner(config.executor, config.num_cpus), q,
                                  progress=progress, logger=get_run_logger())
    progress(1, 1)
    return {**written.to_dict(), "quarantined_by_stage": dict(q.by_stage)}


@task(name="finalize", **RETRY)
def finalize(cfg: dict) -> int:
    """Compact the run's small fragments and update the clip_id index."""
    config = _config(cfg)
    return steps.finalize(config, Runner(config.executor, config.num_cpus))


@task(name="summarize", **RETRY)
def summarize(cfg: dict, run_id: str, started: str, duration_s: float, found: dict, plan: dict, written: dict) -> dict:
    config = _config(cfg)
    by_stage: dict[str, int] = {}
    for part in (found, plan, written):
        for k, v in part["quarantined_by_stage"].items():
            by_stage[k] = by_stage.get(k, 0) + v
    w = steps.Written(**{k: v for k, v in written.items() if k != "quarantined_by_stage"})
    s = steps.new_summary(config, run_id)
    s.started, s.duration_s = started, duration_s
    steps.add_to_summary(s, found["seen"], steps.Plan.from_dict(plan), w, by_stage, sum(by_stage.values()),
                         found["seen"] - len(found["refs"]))
    s = steps.summarize(config, s, get_run_logger())
    create_markdown_artifact(s.to_markdown(), key=f"curate-summary-{config.dataset.replace('_', '-')}",
                             description=f"curation summary of {config.dataset}")
    print(s.to_text(), flush=True)
    return s.to_dict()


@config_flow(CurateConfig, name="curate", log_prints=True)
def curate(config: CurateConfig) -> dict:
    """Curate ``dataset`` from ``raw`` into ``out``/<dataset>.lance; returns the run summary (a dict).

    The parameters are the fields of :class:`egom2p.curate.CurateConfig` (the same as ``egom2p curate``'s
    flags). The cheap checks run first (:meth:`CurateConfig.check`), so a missing parameter or input
    fails the run before Ray or a model starts.
    """
    apply_deployment_env()
    config.check()
    run_id = str(flow_run.get_id() or "")[:12] or uuid.uuid4().hex[:12]
    t0, started = time.monotonic(), steps.new_summary(config, run_id).started
    cfg = prepare(config.to_dict())
    lock = steps.RunLock(config, run_id)
    lock.acquire()
    try:
        with Runner(config.executor, config.num_cpus) as runner:  # one local Ray for every task of the run
            runner.ensure_started()
            found = discover(cfg, run_id)
            plan = split(cfg, found["refs"], run_id)
            written = process(cfg, plan, run_id)
            finalize(cfg)
            return summarize(cfg, run_id, started, round(time.monotonic() - t0, 2), found, plan, written)
    finally:
        lock.release()
