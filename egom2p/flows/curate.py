"""The ``curate`` Prefect flow: raw dataset -> clips table, on Ray Data.

Each step of :class:`egom2p.curate.CurationRun` is a Prefect task: prepare (fail fast) -> discover
-> split -> annotate+standardize+write (streams from Ray, appends to Lance in small commits) ->
summarize (JSON + PNG beside the table, a markdown artifact, the console). Progress: a Prefect
progress artifact, log lines per committed batch and a console bar.

Run in-process: ``egom2p curate egogen --raw DIR --out DIR`` or ``curate(dataset=..., raw=..., out=...)``;
deployed: ``prefect deployment run curate/egogen -p raw=DIR -p out=DIR`` (see prefect.yaml).
"""

from __future__ import annotations


from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from egom2p.curate import CurateConfig, CurationRun
from egom2p.flows import progress_artifact
from egom2p.flows.deployments import apply_deployment_env
from egom2p.runconfig import config_flow


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(run: CurationRun) -> None:
    run.prepare()


@task(name="discover", cache_policy=NO_CACHE)
def discover(run: CurationRun):
    return run.discover()


@task(name="split", cache_policy=NO_CACHE)
def split(run: CurationRun, refs):
    return run.split(refs)


@task(name="annotate-standardize-write", cache_policy=NO_CACHE)
def process(run: CurationRun, chunks) -> None:
    key = f"curate-progress-{run.config.dataset.replace('_', '-')}"
    progress = progress_artifact(f"clips of {run.config.dataset} done", key=key)
    run.process(chunks, progress)
    progress(1, 1)


@task(name="summarize", cache_policy=NO_CACHE)
def summarize(run: CurationRun):
    s = run.summarize()
    create_markdown_artifact(s.to_markdown(), key=f"curate-summary-{run.config.dataset.replace('_', '-')}",
                             description=f"curation summary of {run.config.dataset}")
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
    run = CurationRun(config, run_id=str(flow_run.get_id() or "")[:12] or None, logger=get_run_logger())
    try:
        prepare(run)
        chunks = split(run, discover(run))
        process(run, chunks)
        return summarize(run)
    finally:
        run.close()
