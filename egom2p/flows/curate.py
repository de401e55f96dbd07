"""The ``curate`` Prefect flow: raw dataset -> clips table, on Ray Data.

Each step of :class:`egom2p.curate.CurationRun` is a Prefect task: prepare (fail fast) -> discover
-> split -> annotate+standardize+write (streams from Ray, appends to Lance in small commits) ->
summarize (JSON + PNG beside the table, a markdown artifact, the console). Progress: a Prefect
progress artifact, log lines per committed batch and a console bar.

Run in-process: ``egom2p curate egogen --raw DIR --out DIR`` or ``curate(dataset=..., raw=..., out=...)``;
deployed: ``prefect deployment run curate/egogen -p raw=DIR -p out=DIR`` (see prefect.yaml).
"""

from __future__ import annotations


from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from egom2p.curate import CurateConfig, CurationRun
from egom2p.flows import progress_artifact
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
