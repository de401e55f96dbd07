"""The ``tokenize`` Prefect flow: clips tables -> versioned token DB ``tokens/<name>.lance``, on Ray Data.

Tasks: prepare (load the tokenizers, check every clips table and the existing DB; fail fast) ->
one task per clips table (plan the clips still missing from the DB, tokenize them on Ray Data actors
- GPU actors when a GPU is present - and commit them in chunks, each commit a Lance version with its
lineage) -> summary (a markdown artifact and the console). Re-running tokenizes only missing clips.

Run in-process: ``egom2p tokenize --clips DIR/egogen.lance --tokenizers DIR --out tokens/v1.lance`` or
``tokenize(clips=[...], tokenizers=..., out=...)``; deployed: ``prefect deployment run tokenize/default``
with ``-p clips='["data/clips/egogen.lance"]' -p tokenizers=checkpoints/tokenizers -p out=tokens/v1.lance``.
"""

from __future__ import annotations


from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from egom2p.tokenizers.stage import TokenizeConfig, TokenizeRun
from egom2p.flows import progress_artifact


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(run: TokenizeRun) -> None:
    run.prepare()


@task(name="tokenize-table", cache_policy=NO_CACHE)
def tokenize_table(run: TokenizeRun, clips_path: str) -> dict:
    progress = progress_artifact(f"clips of {clips_path} tokenized")
    res = run.tokenize_table(clips_path, progress)
    progress(1, 1)
    return res.__dict__


@task(name="summary", cache_policy=NO_CACHE)
def summary(run: TokenizeRun) -> dict:
    s = run.summary()
    lines = [f"# Token DB `{s['out']}`", "", f"version {s.get('version')}, {s.get('rows')} clips; "
             f"{s['added']} added by this run", "", "| dataset | rgb | depth | gaze | cam |", "|---|---|---|---|---|"]
    for ds, c in (s.get("counts") or {}).items():
        lines.append(f"| {ds} | {c['rgb']} | {c['depth']} | {c['gaze']} | {c['cam']} |")
    create_markdown_artifact("\n".join(lines), key="tokenize-summary", description="token DB coverage")
    print("\n".join(lines), flush=True)
    return s


@flow(name="tokenize", log_prints=True)
def tokenize(clips: list[str], tokenizers: str, out: str, modalities: list[str] | None = None, batch_size: int = 8,
             commit_every: int = 256, limit: int | None = None, device: str = "auto", actors: int | None = None,
             num_cpus: int | None = None, use_ray: bool = True) -> dict:
    """Tokenize the clips tables ``clips`` with the checkpoints in ``tokenizers`` into the token DB ``out``.

    modalities: subset of the tokenizers to run (default: all found); limit: at most this many new
    clips per table; commit_every: clips per Lance version; device: auto | cpu | cuda.
    """
    config = TokenizeConfig(clips=list(clips), tokenizers=tokenizers, out=out, modalities=modalities,
                            batch_size=batch_size, commit_every=commit_every, limit=limit, device=device,
                            actors=actors, num_cpus=num_cpus, use_ray=use_ray)
    logger = get_run_logger()
    run = TokenizeRun(config, log=logger.info)
    try:
        prepare(run)
        for p in config.clips:
            tokenize_table(run, p)
        return summary(run)
    finally:
        run.close()
