"""``egom2p eval {camera,gaze,depth,rgb}``: run a task over evaluation clips and print the paper's tables.

    egom2p eval camera --ckpt runs/tiny/last --tokenizers tok/ --clips out/egogen.lance [--limit 50]
                       [--split val] [--out eval/]

One row per method: the model and simple reference baselines measured on the same clips, so a number
means something on any data (paper Tables 2-4 report specialist methods instead):

* camera: static pose (the camera never moves) and constant velocity (the first ground-truth step
  repeated); metrics ATE / RTE / RRE after the stated alignment (default Sim(3), Umeyama);
* gaze: centre prior (0.5, 0.5); metric MSE of normalised coordinates over valid frames;
* depth: per-clip mean depth (a constant at the mean ground-truth depth); AbsRel and delta<1.25
  after sequence-level scale-and-shift alignment in inverse depth (metrics.py says why);
* rgb (from depth): the video tokenizer's own round trip of the ground truth (an upper bound the
  model cannot beat); PSNR, SSIM, LPIPS and FVD (LPIPS/FVD when their weights are found).

Metrics are averaged over clips; "time/seq" is the wall time of tokenize + generate + detokenize per
2-second clip (batch size 1 unless --batch-size), the paper's "time per sequence". The table is
printed, and written as JSON and markdown to --out.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import metrics as M
from ..clip import Clip
from ..geometry import relative_to_first
from ..tasks import TASKS, TaskInputError, TaskRunner, Timing, get_task
from ..video import center_crop_resize, token_frame_indices

# columns of each task's table: (key, header, format, lower is better)
COLUMNS = {
    "camera": [("ate", "ATE (m)", "{:.4f}", True), ("rte", "RTE (m)", "{:.4f}", True), ("rre", "RRE (deg)", "{:.3f}", True)],
    "gaze": [("mse", "MSE", "{:.4f}", True)],
    "depth": [("abs_rel", "AbsRel", "{:.4f}", True), ("delta1", "delta<1.25", "{:.4f}", False)],
    "rgb": [("fvd", "FVD", "{:.2f}", True), ("ssim", "SSIM", "{:.4f}", False), ("psnr", "PSNR", "{:.2f}", False),
            ("lpips", "LPIPS", "{:.4f}", True)],
}
MODEL_ROW = "EgoM2P"


@dataclass
class EvalReport:
    task: str
    rows: list[dict]  # {"method", metric keys..., "time_s"}
    num_clips: int
    notes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    # the model's output per clip, written beside the tables so `egom2p view` can show it with the truth
    predictions: dict | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {"task": self.task, "num_clips": self.num_clips, "settings": self.settings, "rows": self.rows,
                "notes": self.notes}

    def row(self, method: str) -> dict:
        for r in self.rows:
            if r["method"] == method:
                return r
        raise KeyError(method)


# --- clips --------------------------------------------------------------------------------------


def _expand(paths) -> list[str]:
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


def needed_modalities(task: str) -> tuple[str, ...]:
    spec = get_task(task)
    return tuple(spec.inputs) + (spec.target,)


def select_clips(paths, task: str, split: str | None = None, limit: int | None = None) -> tuple[list[Clip], str]:
    """Clips from clips tables that have the task's input and ground truth; returns (clips, split used).

    ``split=None`` picks the held-out clips (every split but "train") when there are any, else all.
    """
    from ..clips import clips_index, read_clips

    need = needed_modalities(task)
    tables = _expand(paths)
    ids: dict[str, list[str]] = {}
    splits_seen: set[str] = set()
    for t in tables:
        idx = clips_index(t).to_pylist()
        ok = [r for r in idx if all(r[f"has_{m}"] for m in need)]
        if task == "depth":
            ok = [r for r in ok if r.get("depth_source") in ("sensor", "render")]  # metric ground truth only
        splits_seen |= {r["split"] for r in ok}
        ids[t] = ok
    if split is None:
        held = sorted(s for s in splits_seen if s != "train")
        chosen = set(held) if held else splits_seen
        used = ",".join(sorted(chosen)) if held else "all (no held-out split)"
    else:
        chosen, used = {split}, split
    clips: list[Clip] = []
    for t, rows in ids.items():
        want = sorted(r["clip_id"] for r in rows if r["split"] in chosen)
        if limit is not None:
            want = want[: max(0, limit - len(clips))]
        if want:
            clips += sorted(read_clips(t, ids=want), key=lambda c: c.clip_id)
        if limit is not None and len(clips) >= limit:
            break
    if not clips:
        extra = " with metric depth (sensor/render)" if task == "depth" else ""
        raise TaskInputError(f"no clip in {', '.join(tables)} has {' and '.join(need)}{extra} in split {used!r}")
    return clips, used


# --- per-task evaluation ------------------------------------------------------------------------


def _resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    return rgb if rgb.shape[1] == size else center_crop_resize(rgb, size)


def _resize_map(values: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W] float (NaN invalid) -> [N, size, size], invalid-aware area resize."""
    from ..standardize import resize_masked

    if values.shape[1] == size:
        return values.astype(np.float32)
    ok = np.isfinite(values)
    small, valid = resize_masked(np.where(ok, values, 0.0), ok, size)
    return np.where(valid, small, np.nan).astype(np.float32)


def _mean_rows(per_clip: dict[str, list[dict]], keys) -> dict[str, dict]:
    out = {}
    for method, vals in per_clip.items():
        row = {"method": method}
        for k in keys:
            xs = [v[k] for v in vals if v.get(k) is not None and not np.isnan(v[k])]
            row[k] = float(np.mean(xs)) if xs else None
        out[method] = row
    return out


def _safe_camera_errors(est: np.ndarray, ref: np.ndarray, alignment: str) -> M.CameraErrors:
    """camera_errors, treating an estimate without motion (degenerate for alignment) as a static camera."""
    try:
        return M.camera_errors(est, ref, alignment)
    except ValueError as e:
        if "degenerate" not in str(e):
            raise
        fixed = np.asarray(est, dtype=np.float64).copy()
        if alignment != "none":
            fixed[:, :3, 3] = np.asarray(ref)[:, :3, 3].mean(0)
        e2 = M.camera_errors(fixed, ref, "none")
        return M.CameraErrors(e2.ate, e2.rte, e2.rre, alignment, 1.0)


def _run_model(runner: TaskRunner, task: str, inputs: dict[str, np.ndarray], batch_size: int, progress: bool):
    timing = Timing()
    out = runner.run(task, inputs, batch_size=batch_size, timing=timing, progress=progress)
    return out, timing


def evaluate(runner: TaskRunner, task: str, clips: list[Clip], *, alignment: str = "sim3", batch_size: int = 1,
             weights_dir=None, progress: bool = True) -> EvalReport:
    """Run ``task`` on standard clips and measure it and its reference baselines against the ground truth."""
    spec = get_task(task)
    S = runner.image_size()
    notes: list[str] = []
    per: dict[str, list[dict]] = {}
    times: dict[str, float] = {}
    n = len(clips)

    if spec.inputs == ("rgb",):
        inputs = {"rgb": np.stack([_resize_rgb(c.rgb, S) for c in clips])}
    else:
        inputs = {"depth": np.stack([_resize_map(c.depth, S) for c in clips])}
    out, timing = _run_model(runner, task, inputs, batch_size, progress)
    times[MODEL_ROW] = timing.total_s / n

    if task == "camera":
        per = {MODEL_ROW: [], "static pose": [], "constant velocity": []}
        t_static = t_cv = 0.0
        for c, pred in zip(clips, out):
            gt = c.cam.astype(np.float64)
            per[MODEL_ROW].append(_safe_camera_errors(relative_to_first(pred), gt, alignment).as_dict())
            t0 = time.perf_counter()
            per["static pose"].append(M.camera_errors_static(gt, alignment).as_dict())
            t1 = time.perf_counter()
            cv = M.constant_velocity_baseline(gt[:2], len(gt))
            per["constant velocity"].append(_safe_camera_errors(cv, gt, alignment).as_dict())
            t2 = time.perf_counter()
            t_static += t1 - t0
            t_cv += t2 - t1
        times["static pose"], times["constant velocity"] = t_static / n, t_cv / n
        notes.append(f"alignment: {dict(none='none', se3='SE(3)', sim3='Sim(3)')[alignment]} (Umeyama on positions); "
                     "ATE = RMSE of positions; RTE/RRE = RMSE of relative pose error at delta = 1 frame (30 FPS), "
                     "RRE in degrees; evo's APE/RPE conventions")
        notes.append("constant velocity repeats the first ground-truth step (it is given the first two poses)")
    elif task == "gaze":
        per = {MODEL_ROW: [], "centre prior": []}
        t_c = 0.0
        skipped = 0
        for c, pred in zip(clips, out):
            mse, k = M.gaze_mse(pred, c.gaze)
            if k == 0:
                skipped += 1
                continue
            per[MODEL_ROW].append({"mse": mse})
            t0 = time.perf_counter()
            per["centre prior"].append({"mse": M.gaze_mse(M.center_prior_gaze(len(c.gaze)), c.gaze)[0]})
            t_c += time.perf_counter() - t0
        times["centre prior"] = t_c / n
        if skipped:
            notes.append(f"{skipped} clips without a valid gaze frame skipped")
        notes.append("MSE of (x, y) normalised to [0, 1], averaged over both coordinates and the valid frames of each clip")
    elif task == "depth":
        per = {MODEL_ROW: [], "per-clip mean depth": []}
        tidx = token_frame_indices()
        t_m = 0.0
        for c, pred in zip(clips, out):
            gt = M.normalized_inverse_to_depth(c.depth[tidx], c.depth_range)  # [16, H, W] metres, NaN invalid
            inv = np.where(np.isfinite(gt), 1.0 / gt, np.nan)
            gt_s = _resize_map(inv, pred.shape[-1])
            gt_s = np.where(np.isfinite(gt_s) & (gt_s > 0), 1.0 / gt_s, np.nan)
            per[MODEL_ROW].append(M.depth_errors(pred, gt_s, space="inverse").as_dict())
            t0 = time.perf_counter()
            const = np.full_like(gt_s, np.nanmean(gt_s))
            per["per-clip mean depth"].append(M.depth_errors(const, gt_s, space="depth").as_dict())
            t_m += time.perf_counter() - t0
        times["per-clip mean depth"] = t_m / n
        notes.append("AbsRel and delta<1.25 over valid pixels of the 16 token frames (8 FPS) after one least-squares "
                     "scale and shift per clip, fitted in inverse depth (the model predicts normalised inverse depth, "
                     "affine-invariant in disparity); aligned inverse depth clamped at 1/max(GT depth)")
    elif task == "rgb":
        per = {MODEL_ROW: [], "tokenizer round trip (upper bound)": []}
        tidx = token_frame_indices()
        gt_videos = np.stack([_resize_rgb(c.rgb[tidx], out.shape[2]) for c in clips])  # [n, 16, S, S, 3]
        t0 = time.perf_counter()
        rt = runner.tokenizers["rgb"].decode(runner.tokenizers["rgb"].encode(
            np.stack([_resize_rgb(c.rgb, S) for c in clips])))
        rt = np.asarray(rt)
        times["tokenizer round trip (upper bound)"] = (time.perf_counter() - t0) / n
        lp = det = None
        try:
            from ..perceptual import load_lpips

            lp = load_lpips(weights_dir, "alex")
        except FileNotFoundError as e:
            notes.append(f"LPIPS not computed: {e}")
        try:
            from ..perceptual import load_i3d

            det = load_i3d(weights_dir)
        except FileNotFoundError as e:
            notes.append(f"FVD not computed: {e}")
        from ..perceptual import fvd, lpips_video

        for name, videos in ((MODEL_ROW, out), ("tokenizer round trip (upper bound)", rt)):
            for v, g in zip(videos, gt_videos):
                row = {"psnr": M.psnr(v, g), "ssim": M.ssim(v, g)}
                if lp is not None:
                    row["lpips"] = lpips_video(lp, v, g)
                per[name].append(row)
            if det is not None and n >= 2:
                fv = fvd(det, videos, gt_videos)
                for row in per[name]:
                    row["fvd"] = fv  # a set-level metric: the same value for every clip
            elif det is not None:
                notes.append("FVD needs at least 2 clips")
        notes.append("PSNR/SSIM/LPIPS on the 16 token frames (8 FPS) per clip; FVD over all clips (I3D, 224x224)")

    keys = [k for k, *_ in COLUMNS[task]]
    rows = _mean_rows(per, keys)
    for m, r in rows.items():
        r["time_s"] = times.get(m)
        r["clips"] = len(per[m])
    settings = {"alignment": alignment if task == "camera" else None, "batch_size": batch_size,
                "device": str(runner.device), "registry": runner.registry.config,
                "generation": runner.config(spec) if isinstance(runner.config(spec), str) else repr(runner.config(spec)),
                "timing_breakdown_s_per_seq": {k: v / n for k, v in timing.as_dict().items() if k.endswith("_s")}}
    preds = {"clip_ids": np.array([c.clip_id for c in clips]), "prediction": np.stack([np.asarray(o) for o in out])}
    return EvalReport(task, list(rows.values()), n, notes, settings, predictions=preds)


# --- tables -------------------------------------------------------------------------------------


def _fmt(v, fmt):
    return "n/a" if v is None else fmt.format(v)


def format_table(report: EvalReport, markdown: bool = False) -> str:
    cols = COLUMNS[report.task]
    heads = ["Method"] + [h + (" ↓" if low else " ↑") for _, h, _, low in cols] + ["Time/seq (s) ↓"]
    body = [[r["method"]] + [_fmt(r.get(k), f) for k, _, f, _ in cols] + [_fmt(r.get("time_s"), "{:.4f}")]
            for r in report.rows]
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(["---"] + ["---:"] * (len(heads) - 1)) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(heads, *body)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    sep = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([line(heads), sep] + [line(b) for b in body])


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
    mpath.write_text(title + format_table(report, markdown=True) + "\n\n" + "\n".join(f"- {n}" for n in report.notes) + "\n")
    return {"json": str(jpath), "markdown": str(mpath), **paths}


# --- CLI ----------------------------------------------------------------------------------------


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on clips: the paper's task tables with reference baselines")
    p.add_argument("task", choices=sorted(TASKS), help="camera | gaze | depth | rgb (depth -> RGB)")
    p.add_argument("--ckpt", required=True, help="training checkpoint (run directory or step directory)")
    p.add_argument("--tokenizers", required=True, help="directory with rgb/ depth/ gaze/ cam/ tokenizers")
    p.add_argument("--clips", required=True, nargs="+", help="clips tables (DIR/<dataset>.lance) or directories of them")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most N clips")
    p.add_argument("--split", default=None, help="split to evaluate (default: every split but train, if any)")
    p.add_argument("--out", default=None, help="directory for eval_<task>.json and .md (default: ./eval)")
    p.add_argument("--alignment", default="sim3", choices=M.ALIGNMENTS, help="camera trajectory alignment")
    p.add_argument("--batch-size", type=int, default=1, help="clips per model call (1 = the paper's per-sequence timing)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--weights", default=None, help="directory of LPIPS/FVD weights (default $EGOM2P_WEIGHTS)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_eval)


def run_eval(args) -> int:
    from ..checkpoint import CheckpointError
    from ..tokenizers import TokenizerError

    try:
        runner = TaskRunner.load(args.ckpt, args.tokenizers, device=args.device, seed=args.seed)
        clips, split = select_clips(args.clips, args.task, args.split, args.limit)
    except (TaskInputError, FileNotFoundError, ValueError, CheckpointError, TokenizerError) as e:
        print(f"egom2p eval: error: {e}")
        return 2
    print(f"egom2p eval {args.task}: {len(clips)} clips (split {split}) from {', '.join(args.clips)}; "
          f"registry {runner.registry.config}, device {args.device}")
    report = evaluate(runner, args.task, clips, alignment=args.alignment, batch_size=args.batch_size,
                      weights_dir=args.weights)
    report.settings.update({"ckpt": os.fspath(args.ckpt), "tokenizers": os.fspath(args.tokenizers),
                            "clips": list(args.clips), "split": split})
    print()
    print(format_table(report))
    for n in report.notes:
        print(f"  * {n}")
    paths = write_report(report, args.out or "eval")
    print(f"\nwrote {paths['json']} and {paths['markdown']}")
    return 0
