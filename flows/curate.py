"""The ``curate`` Prefect flow: raw dataset -> clips table, on Ray Data.

Each step of :class:`egom2p.curate.CurationRun` is a Prefect task: prepare (fail fast) -> discover
-> split -> annotate+standardize+write (streams from Ray, appends to Lance in small commits) ->
summarize (JSON + PNG beside the table, a markdown artifact, the console). Progress: a Prefect
progress artifact, log lines per committed batch and a console bar.

Run in-process: ``egom2p curate egogen --raw DIR --out DIR`` or ``curate(dataset=..., raw=..., out=...)``;
deployed: ``prefect deployment run curate/egogen -p raw=DIR -p out=DIR`` (see prefect.yaml).
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from egom2p.curate import CurateConfig, CurationRun
from egom2p.modalities import CLIP_FRAMES, STANDARD_IMAGE_SIZE


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
    artifact_id = create_progress_artifact(0.0, key=key, description=f"clips of {run.config.dataset} done")
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] > 2.0:
            last[0] = now
            update_progress_artifact(artifact_id, 100.0 * done / max(total, 1))

    run.process(chunks, progress)
    update_progress_artifact(artifact_id, 100.0)


@task(name="summarize", cache_policy=NO_CACHE)
def summarize(run: CurationRun):
    s = run.summarize()
    create_markdown_artifact(s.to_markdown(), key=f"curate-summary-{run.config.dataset.replace('_', '-')}",
                             description=f"curation summary of {run.config.dataset}")
    print(s.to_text(), flush=True)
    return s.to_dict()


@flow(name="curate", log_prints=True)
def curate(dataset: str, raw: str, out: str, limit: int | None = None, stride: int = CLIP_FRAMES,
           depth: str | None = None, depth_options: dict | None = None, size: int = STANDARD_IMAGE_SIZE,
           windows_per_task: int = 4, write_batch: int = 8, annotate_actors: int = 0, annotate_gpus: float = 0.0,
           num_cpus: int | None = None) -> dict:
    """Curate ``dataset`` from ``raw`` into ``out``/<dataset>.lance; returns the run summary (a dict).

    depth: the depth annotator (render | sensor | rollingdepth | none; default: the adapter's);
    depth_options: its options (e.g. {"checkpoint": DIR} for rollingdepth); limit: at most this many
    sequences; stride: frames between clip starts (60: back-to-back 2 s clips).
    """
    config = CurateConfig(dataset=dataset, raw=raw, out=out, limit=limit, stride=stride, depth=depth,
                          depth_options=dict(depth_options or {}), size=size, windows_per_task=windows_per_task,
                          write_batch=write_batch, annotate_actors=annotate_actors, annotate_gpus=annotate_gpus,
                          num_cpus=num_cpus)
    run = CurationRun(config, run_id=str(flow_run.get_id() or "")[:12] or None, logger=get_run_logger())
    try:
        prepare(run)
        chunks = split(run, discover(run))
        process(run, chunks)
        return summarize(run)
    finally:
        run.close()
