"""Evaluation of a checkpoint on standard clips: the paper's task tables with a ceiling and baselines.

    report = evaluate(runner, "camera", clips, train_clips=train)     # egom2p eval camera ... prints it

Every table has, on the same held-out clips and scored by the same code (the task's ``truth`` and
``score`` in :mod:`egom2p.tasks.table`, which call :mod:`egom2p.metrics`):

* ``EgoM2P``: the model (tokenize -> generate with the task's preset -> detokenize);
* ``tokenizer round trip``: the ground truth encoded and decoded by the target's tokenizer, i.e. what
  a perfect model (one that generates the ground-truth tokens) would score: the ceiling;
* the task's baselines (:mod:`egom2p.tasks.baselines`); those that need training statistics are fitted
  on training clips (:func:`training_clips`: the train split of the evaluated clips tables, else of the
  token DB's lineage clips tables), and the table's notes say which.

Below the table, the factor of the model against the best baseline on each main metric (camera ATE
and RRE, gaze MSE, depth AbsRel, RGB PSNR and SSIM; > 1 means the model is better).

:func:`score_reconstructions` is the same scoring for ``egom2p tokenizer train``'s evaluation, so a
tokenizer's reported numbers are exactly the ceiling row of ``egom2p eval``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .metrics import DEFAULT_ALIGNMENT
from .modality import MODALITY_INFO
from .modality import names as modality_names
from .tasks.inputs import clip_inputs
from .tasks.runner import TaskRunner, Timing
from .tasks.spec import ScoreContext, TaskInputError, TaskSpec
from .tasks.table import get_task, task_for_target

MODEL_ROW = "EgoM2P"
CEILING_ROW = "tokenizer round trip"
TRAIN_LIMIT = 512  # training clips read for the baselines' statistics (evenly spaced over the sorted ids)


EXPECTED_ROW = f"{MODEL_ROW}, expected code"  # the row of evaluate(..., expected=True)


def mean_row(samples: int) -> str:
    """The table row of the mean of ``samples`` decoded samples (``evaluate(..., samples=K)``)."""
    return f"{MODEL_ROW}, mean of {samples} samples"


@dataclass
class EvalReport:
    task: str
    rows: list[dict]  # {"method", "kind" (model | ceiling | baseline), metric keys..., "time_s", "clips"}
    num_clips: int
    notes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    comparison: list[dict] = field(default_factory=list)  # model vs best baseline per main metric
    # the model's output per clip ({"clip_ids": [n], "prediction": [n, ...]}), written beside the tables so
    # `egom2p view` can show it with the truth
    predictions: dict | None = field(default=None, repr=False)
    rows_predictions: dict = field(default_factory=dict, repr=False)  # {method: [per clip]} (keep_predictions)
    truths: list = field(default_factory=list, repr=False)  # per-clip ground truth (keep_predictions)
    # what the inputs are worth to the model: the target tokens' NLL (nats per token) on these clips given the
    # task's inputs and given none, and their difference (:func:`token_information`)
    information: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"task": self.task, "num_clips": self.num_clips, "settings": self.settings, "rows": self.rows,
                "comparison": self.comparison, "information": self.information, "notes": self.notes}

    def row(self, method: str) -> dict:
        for r in self.rows:
            if r["method"] == method:
                return r
        raise KeyError(method)


# --- clips --------------------------------------------------------------------------------------


def expand_tables(paths) -> list[str]:
    """Clips tables from paths that are tables (``*.lance``) or directories of them."""
    out = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p) and not p.rstrip("/").endswith(".lance"):
            found = sorted(str(q) for q in Path(p).glob("*.lance"))
            if not found:
                raise TaskInputError(f"{p}: no clips table (*.lance) in this directory")
            out += found
        elif not os.path.exists(p):
            raise TaskInputError(f"{p}: clips table not found")
        else:
            out.append(p)
    return out


def _usable(table: str, need, keep=None) -> list[dict]:
    from .clips import clips_index

    rows = [r for r in clips_index(table).to_pylist() if all(r[f"has_{m}"] for m in need)]
    return [r for r in rows if keep(r)] if keep is not None else rows


def select_clips(paths, task: str, split: str | None = None, limit: int | None = None) -> tuple[list, str]:
    """Clips from clips tables that have the task's input and ground truth; returns (clips, split used).

    ``split=None`` picks the held-out clips (every split but "train") when there are any, else all.
    """
    from .clips import read_clips

    spec = get_task(task)
    tables = expand_tables(paths)
    ids = {t: _usable(t, spec.modalities, spec.clip_filter) for t in tables}
    splits_seen = {r["split"] for rows in ids.values() for r in rows}
    if split is None:
        held = sorted(s for s in splits_seen if s != "train")
        chosen = set(held) if held else splits_seen
        used = ",".join(sorted(chosen)) if held else "all (no held-out split)"
    else:
        chosen, used = {split}, split
    clips: list = []
    for t, rows in ids.items():
        want = sorted(r["clip_id"] for r in rows if r["split"] in chosen)
        if limit is not None:
            want = want[: max(0, limit - len(clips))]
        if want:
            clips += sorted(read_clips(t, ids=want), key=lambda c: c.clip_id)
        if limit is not None and len(clips) >= limit:
            break
    if not clips:
        raise TaskInputError(f"no clip in {', '.join(tables)} has {' and '.join(spec.modalities)}{spec.gt_note} "
                             f"in split {used!r}")
    return clips, used


def _lineage_tables(checkpoint: dict) -> list[str]:
    """Clips tables of the token DB a checkpoint was trained on (its lineage), where they still exist."""
    db = (checkpoint or {}).get("db") or {}
    if not db.get("path"):
        return []
    try:
        from .tokendb import open_token_db

        lineage = open_token_db(db["path"], db.get("version")).lineage
    except Exception:  # the DB moved or is unreadable: no lineage, the caller says so
        return []
    return sorted({e["clips"] for e in lineage if e.get("clips") and os.path.exists(e["clips"])})


def training_clips(spec: TaskSpec, tables=(), checkpoint: dict | None = None,
                   limit: int = TRAIN_LIMIT) -> tuple[list, str]:
    """Training clips for the baselines of ``spec`` that need statistics, and a sentence saying where they came from.

    The train split of ``tables`` (the evaluated clips tables); when they hold none, the train split
    of the clips tables in the lineage of the checkpoint's token DB. Only the modalities the
    baselines need are decoded; at most ``limit`` clips, evenly spaced over the sorted clip ids.
    """
    from .clips import read_clips

    need = sorted({m for b in spec.baselines if b.fit is not None for m in b.needs})
    if not need:
        return [], ""
    for source, cands in (("the evaluated clips tables", expand_tables(tables) if tables else []),
                          ("the clips tables of the checkpoint's token DB lineage", _lineage_tables(checkpoint))):
        rows = {t: sorted(r["clip_id"] for r in _usable(t, need) if r["split"] == "train") for t in cands}
        total = sum(len(v) for v in rows.values())
        if total == 0:
            continue
        pick = set(np.unique(np.linspace(0, total - 1, min(limit, total)).round().astype(int)).tolist())
        clips, k = [], 0
        for t, ids in rows.items():
            want = [i for j, i in enumerate(ids) if k + j in pick]
            k += len(ids)
            if want:
                # the video payloads only when a baseline needs them (sequences are cheap)
                skip = [m for m in modality_names("video") if m not in need]
                clips += sorted(read_clips(t, ids=want, skip=skip), key=lambda c: c.clip_id)
        tnames = ", ".join(Path(t).name for t in rows if rows[t])
        return clips, f"{len(clips)} train-split clips of {source} ({tnames})"
    return [], ""


# --- scoring ------------------------------------------------------------------------------------


def _mean_row(method: str, kind: str, per_clip: list[dict], keys, extra: dict | None = None) -> dict:
    row = {"method": method, "kind": kind}
    for k in keys:
        xs = [v[k] for v in per_clip if v.get(k) is not None and not np.isnan(v[k])]
        row[k] = float(np.mean(xs)) if xs else None
    for k, v in (extra or {}).items():
        row[k] = v
    return row


def score_predictions(spec: TaskSpec, preds, truths, ctx: ScoreContext) -> tuple[list[dict], dict]:
    """Per-clip scores (clips whose ground truth cannot be scored are left out) and set-level scores."""
    per = [s for s in (spec.score(p, t, ctx) for p, t in zip(preds, truths)) if s is not None]
    sets = spec.set_score(preds, truths, ctx) if spec.set_score is not None else {}
    return per, sets


def compare(spec: TaskSpec, rows: list[dict]) -> list[dict]:
    """Each model row vs the best baseline (and the ceiling) on each main metric; ``factor`` > 1: the model
    is better."""
    ceiling = next((r for r in rows if r["method"] == CEILING_ROW), {})
    out = []
    for model in (r for r in rows if r["kind"] == "model"):
        out += _compare_row(spec, rows, model, ceiling)
    return out


def _compare_row(spec: TaskSpec, rows: list[dict], model: dict, ceiling: dict) -> list[dict]:
    out = []
    for key in spec.main_metrics:
        col = spec.column(key)
        vals = [(r[key], r["method"]) for r in rows if r["kind"] == "baseline" and r.get(key) is not None]
        mv = model.get(key)
        if not vals or mv is None:
            continue
        bv, bm = min(vals) if col.lower_is_better else max(vals)
        num, den = (bv, mv) if col.lower_is_better else (mv, bv)
        factor = float(num / den) if den > 0 else float("inf")
        out.append({"metric": key, "header": col.header, "method": model["method"], "model": mv,
                    "best_baseline": bm, "baseline": bv,
                    "ceiling": ceiling.get(key), "factor": factor, "model_better": factor > 1.0})
    return out


def evaluate(runner: TaskRunner, task: str, clips: list, *, alignment: str = DEFAULT_ALIGNMENT, batch_size: int = 1,
             weights_dir=None, train_clips: list | None = None, train_source: str = "",
             progress: bool = True, keep_predictions: bool = False, samples: int = 1,
             expected: bool = False) -> EvalReport:
    """Run ``task`` on standard clips; score the model, the tokenizer round trip and the baselines against the
    ground truth (one :class:`EvalReport`). ``samples`` > 1 adds the row :func:`mean_row`: the mean of that
    many samples per clip (:meth:`TaskRunner.sampling`); ``expected`` the row :data:`EXPECTED_ROW`: the decode
    of the expected code (:meth:`TaskRunner.expectation`)."""
    spec = get_task(task)
    S = runner.image_size()
    ctx = ScoreContext(alignment=alignment, weights_dir=weights_dir)
    n = len(clips)
    truths = [spec.truth(c, S) for c in clips]
    preds: dict[str, list] = {}
    kinds: dict[str, str] = {}
    times: dict[str, float] = {}

    timing = Timing()
    inputs = clip_inputs(clips, spec.inputs, S)
    out = runner.run(spec, inputs, batch_size=batch_size, timing=timing, progress=progress)
    preds[MODEL_ROW] = [spec.postprocess(o) for o in out]
    kinds[MODEL_ROW], times[MODEL_ROW] = "model", timing.total_s / n
    extra = []  # (row, runner, note): the other point estimates of the model
    if samples > 1:
        extra.append((mean_row(samples), runner.sampling(samples),
                      f"{mean_row(samples)}: {samples} samples per clip drawn at temperature 1 (nucleus off) and "
                      f"averaged in the target's geometry (poses: mean translation, chordal mean rotation), the "
                      f"estimate that minimises squared error; {MODEL_ROW}: one decode with the paper's preset"))
    if expected:
        extra.append((EXPECTED_ROW, runner.expectation(),
                      f"{EXPECTED_ROW}: every {spec.target} token queried at once in one pass (the preset's guidance), "
                      f"and the tokenizer decodes each token's expected code under the model's distribution (camera, "
                      f"gaze: the mean code vector put back on the codebook's unit sphere; video: the mean level per "
                      f"FSQ channel): a point estimate without sampling noise"))
    for row, variant, note in extra:
        t = Timing()
        out_v = variant.run(spec, inputs, batch_size=batch_size, timing=t, progress=progress)
        preds[row], kinds[row], times[row] = [spec.postprocess(o) for o in out_v], "model", t.total_s / n
        ctx.note(note)

    t0 = time.perf_counter()
    targets = clip_inputs(clips, (spec.target,), S)[spec.target]
    rt = runner.round_trip(spec.target, targets, batch_size=max(batch_size, 8))
    preds[CEILING_ROW], kinds[CEILING_ROW] = [spec.postprocess(o) for o in rt], "ceiling"
    times[CEILING_ROW] = (time.perf_counter() - t0) / n
    ctx.note(f"{CEILING_ROW}: the ground truth encoded and decoded by the {spec.target} tokenizer and scored the same "
             f"way, i.e. a model that generates the ground-truth tokens (the ceiling of this table)")

    information = token_information(runner, spec, inputs, targets, batch_size=max(batch_size, 8))
    ctx.note(f"{spec.target} tokens' NLL: the ground truth encoded by the {spec.target} tokenizer, scored under the "
             f"model's one-pass distribution (no guidance) given {', '.join(spec.inputs)} and given no input (the "
             f"unconditional pass, the prior the model learnt); their difference is what the inputs are worth")

    for b in spec.baselines:
        state = None
        if b.fit is not None:
            if not train_clips:
                ctx.note(f"{b.name}: not computed (no training clips with {', '.join(b.needs)} found)")
                continue
            state = b.fit(train_clips, S)
        t0 = time.perf_counter()
        preds[b.name] = [b.predict(c, state, S) for c in clips]
        times[b.name], kinds[b.name] = (time.perf_counter() - t0) / n, "baseline"
        if b.note:
            ctx.note(b.note)
    if train_source and any(b.fit is not None for b in spec.baselines):
        ctx.note(f"training statistics of the baselines from {train_source}")

    keys = [c.key for c in spec.columns]
    rows = []
    for name, ps in preds.items():
        per, sets = score_predictions(spec, ps, truths, ctx)
        rows.append(_mean_row(name, kinds[name], per, keys, sets))
        rows[-1]["time_s"], rows[-1]["clips"] = times.get(name), len(per)
    skipped = n - rows[0]["clips"]
    if skipped:
        ctx.note(f"{skipped} clips without scorable ground truth skipped")
    cfg = runner.config(spec)
    settings = {"alignment": alignment if "alignment" in spec.settings else None, "batch_size": batch_size,
                "device": str(runner.device), "registry": runner.registry.config,
                "generation": cfg if isinstance(cfg, str) else repr(cfg),
                "timing_breakdown_s_per_seq": {k: v / n for k, v in timing.as_dict().items() if k.endswith("_s")},
                "training_statistics": train_source or None,
                **{k: getattr(ctx, k) for k in spec.settings if k != "alignment"}}
    notes = spec.describe(ctx) + ctx.notes
    report = EvalReport(task, rows, n, notes, settings, compare(spec, rows),
                        predictions={"clip_ids": np.array([c.clip_id for c in clips]),
                                     "prediction": np.stack([np.asarray(o) for o in out])}, information=information)
    if keep_predictions:
        report.rows_predictions, report.truths = preds, truths
    return report


def token_information(runner: TaskRunner, spec: TaskSpec, inputs: dict, targets: np.ndarray, batch_size: int = 8
                      ) -> dict:
    """What the task's inputs are worth to the model on these clips: the mean NLL (nats per token) of the
    ground-truth target tokens given the inputs (``given_inputs``) and given none (``without_inputs``, the prior
    the model learnt), and ``gain`` = without - given. A gain near 0 says the model predicts from its prior:
    it matches the "mean training" baselines at best, whatever its tokenizer's ceiling. The "without" pass is a
    trained prior only for a model trained with ``data.empty_input_prob`` > 0 (0.05 in both presets)."""
    nll = runner.token_nll(spec, inputs, targets, batch_size=batch_size)
    given, without = (float(v) for v in nll.mean(0))
    return {"target": spec.target, "inputs": list(spec.inputs), "given_inputs": given, "without_inputs": without,
            "gain": without - given, "clips": len(nll)}


def score_reconstructions(modality: str, originals, reconstructions, meta=None, ctx: ScoreContext | None = None
                          ) -> dict:
    """A tokenizer's round trip scored exactly like the ceiling row of ``egom2p eval``.

    The task is the one that generates ``modality``. ``originals`` are standard-clip arrays of
    ``modality`` [B, 60, ...], ``reconstructions`` the tokenizer's decode of their tokens; ``meta`` per clip
    (objects with the clip's other fields, e.g. ``depth_range``) where the ground truth needs them.
    Returns the mean of each metric keyed ``{modality}_{metric}[_{unit}]`` (e.g. ``cam_ate_m``),
    plus ``alignment`` for camera metrics. Metrics whose ground truth is unavailable are left out.
    """
    try:
        spec = task_for_target(modality)
    except KeyError:  # no task generates it (a registered modality beyond the four): its plain RMSE
        from .metrics import sequence_rmse

        return {f"{modality}_rmse": sequence_rmse(reconstructions, originals)[0]}
    ctx = ctx or ScoreContext()
    originals = np.asarray(originals)
    size = np.asarray(reconstructions[0]).shape[1] if MODALITY_INFO[modality].tokenizer == "video" else 0
    truths, preds = [], []
    for i, (x, r) in enumerate(zip(originals, reconstructions)):
        fields = dict(vars(meta[i])) if meta is not None and meta[i] is not None else {}
        fields[modality] = x
        try:
            truths.append(spec.truth(SimpleNamespace(**fields), size))
        except (AttributeError, TypeError):
            return {}  # e.g. depth without its metric range: no ground truth for this task's metrics
        preds.append(spec.postprocess(r))
    per, sets = score_predictions(spec, preds, truths, ctx)
    row = _mean_row("", "", per, [c.key for c in spec.columns], sets)
    out = {}
    for c in spec.columns:
        if row.get(c.key) is not None:
            out[f"{modality}_{c.key}" + (f"_{c.unit}" if c.unit else "")] = row[c.key]
    for k in spec.settings:  # named settings (camera alignment) travel with the numbers
        if isinstance(getattr(ctx, k), str):
            out[k] = getattr(ctx, k)
    return out


def held_out_loss(ckpt, db, split: str = "val", batches: int = 25, batch_size: int = 16, seed: int = 1234
                  ) -> dict[str, float]:
    """Masked-token cross-entropy (nats) per modality of a checkpoint on the ``split`` rows of a token DB,
    masked by the checkpoint's own training mixture (budgets, Dirichlets), averaged over ``batches``
    batches; with the same numbers on its training rows it shows over- and under-fitting directly."""
    import torch

    from .checkpoint import load_model
    from .model import combine_losses
    from .sampler import MaskingSampler, MixtureConfig

    model, _registry, info = load_model(ckpt)
    mix = MixtureConfig.from_dict({**info["config"]["data"], "split": split})
    sampler = MaskingSampler(os.fspath(db), mix, seed=seed, batch_size=batch_size)
    sums: dict[str, list[float]] = {}
    with torch.no_grad():
        for b in range(batches):
            _, per_mod = combine_losses(model(sampler.batch(b)))
            for m, v in per_mod.items():
                sums.setdefault(m, []).append(float(v))
    return {m: float(np.mean(v)) for m, v in sums.items()}


# --- tables -------------------------------------------------------------------------------------


def _fmt(v, fmt):
    return "n/a" if v is None else fmt.format(v)


def format_table(report: EvalReport, markdown: bool = False) -> str:
    cols = get_task(report.task).columns
    heads = ["Method"] + [c.header + (" ↓" if c.lower_is_better else " ↑") for c in cols] + ["Time/seq (s) ↓"]
    body = [[r["method"]] + [_fmt(r.get(c.key), c.fmt) for c in cols] + [_fmt(r.get("time_s"), "{:.4f}")]
            for r in report.rows]
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(["---"] + ["---:"] * (len(heads) - 1)) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(heads, *body)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    sep = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([line(heads), sep] + [line(b) for b in body])


def format_comparison(report: EvalReport) -> list[str]:
    """One line per main metric: model vs the best baseline, the factor (> 1: model better) and the ceiling."""
    cols = {c.key: c for c in get_task(report.task).columns}
    lines = []
    for c in report.comparison:
        f = cols[c["metric"]].fmt
        ceil = f"; ceiling {_fmt(c['ceiling'], f)}" if c.get("ceiling") is not None else ""
        lines.append(f"{c['header']}: {c['method']} {f.format(c['model'])} vs best baseline {f.format(c['baseline'])} "
                     f"({c['best_baseline']}): {c['factor']:.2f}x {'better' if c['model_better'] else 'worse'}{ceil}")
    info = report.information
    if info:
        lines.append(f"{info['target']} tokens' NLL: {info['given_inputs']:.3f} nats given {', '.join(info['inputs'])}, "
                     f"{info['without_inputs']:.3f} without any input: the inputs are worth {info['gain']:.3f} nats "
                     f"per token to the model")
    return lines


def write_report(report: EvalReport, out_dir, extra: dict | None = None) -> dict[str, str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / f"eval_{report.task}.json", out / f"eval_{report.task}.md"
    paths = {}
    if report.predictions is not None:  # clip_ids [n] and the model's output [n, ...] (see egom2p.view)
        ppath = out / f"eval_{report.task}_predictions.npz"
        np.savez_compressed(ppath, **report.predictions)
        paths["predictions"] = str(ppath)
        extra = {**(extra or {}), "predictions": ppath.name}
    jpath.write_text(json.dumps({**report.as_dict(), **(extra or {})}, indent=2, default=str))
    title = f"## egom2p eval {report.task} ({report.num_clips} clips)\n\n"
    comp = format_comparison(report)
    comp_md = ("\n" + "\n".join(f"- {c}" for c in comp) + "\n") if comp else ""
    mpath.write_text(title + format_table(report, markdown=True) + "\n" + comp_md + "\n"
                     + "\n".join(f"- {n}" for n in report.notes) + "\n")
    return {"json": str(jpath), "markdown": str(mpath), **paths}
