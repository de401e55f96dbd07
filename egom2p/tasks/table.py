"""The task table: the four EgoM2P tasks, one :class:`~.spec.TaskSpec` each.

``egom2p predict``, ``egom2p eval`` (:mod:`egom2p.evaluation`), ``egom2p tokenizer train``'s
evaluation, the notebooks and the benchmarks read this table; none of them branches on a task's
name. A task's ground truth (``truth``) and scoring (``score``, through :mod:`egom2p.metrics`) are
defined here once and used for every row of its evaluation table: the model, the tokenizer round
trip (the ceiling) and the baselines (:mod:`.baselines`).

| task | inputs | target | main metrics |
|---|---|---|---|
| camera | rgb | cam | ATE, RRE (after the stated alignment, default Sim(3)) |
| gaze | rgb | gaze | MSE of normalised (x, y) |
| depth | rgb | depth | AbsRel (and delta<1.25) after a sequence-level scale and shift in inverse depth |
| rgb | depth | rgb | PSNR, SSIM (and LPIPS, FVD with local weights) |
"""

from __future__ import annotations

import numpy as np

from .. import geometry as geo
from .. import metrics as M
from ..modalities import CLIP_FRAMES
from . import baselines as B
from . import writers as W
from .inputs import resize_map, token_rgb
from .spec import Column, ScoreContext, TaskSpec
from .stitch import renormalize_inverse_depth, stitch_camera, stitch_frames, stitch_video

_ALIGN_NAMES = {"none": "none", "se3": "SE(3)", "sim3": "Sim(3)"}

# --- camera -------------------------------------------------------------------------------------


def _camera_truth(clip, size: int) -> np.ndarray:
    return np.asarray(clip.cam, dtype=np.float64)


def _camera_score(pred, truth, ctx: ScoreContext) -> dict:
    return M.trajectory_errors(pred, truth, ctx.alignment).as_dict()


def _camera_stitch(windows, starts, n):
    return stitch_camera(windows, starts, n), np.arange(n)


def _camera_plot(clip, preds: dict, truth, title: str = ""):
    from .. import viz

    return viz.trajectory_3d({"ground truth": truth, **preds}, title=title)


def _camera_describe(ctx: ScoreContext) -> list[str]:
    return [f"alignment: {_ALIGN_NAMES[ctx.alignment]} (Umeyama on positions); ATE = RMSE of positions; RTE/RRE = "
            "RMSE of relative pose error at delta = 1 frame (30 FPS), RRE in degrees; evo's APE/RPE conventions; "
            "a prediction without motion is placed at the ground-truth centroid"]


# --- gaze ---------------------------------------------------------------------------------------


def _gaze_truth(clip, size: int) -> np.ndarray:
    return np.asarray(clip.gaze, dtype=np.float32)


def _gaze_score(pred, truth, ctx: ScoreContext) -> dict | None:
    mse, n = M.gaze_mse(pred, truth)
    return None if n == 0 else {"mse": mse}


def _gaze_stitch(windows, starts, n):
    return stitch_frames(windows, starts, n).astype(np.float32), np.arange(n)


def _gaze_plot(clip, preds: dict, truth, title: str = ""):
    from .. import viz

    (name, pred), = list(preds.items())[:1]
    return viz.gaze_overlay(clip.rgb, truth, pred=pred, title=title or f"gaze: ground truth (green), {name} (red)")


def _gaze_describe(ctx: ScoreContext) -> list[str]:
    return ["MSE of (x, y) normalised to [0, 1], averaged over both coordinates and the valid frames of each clip"]


# --- depth --------------------------------------------------------------------------------------


def _depth_truth(clip, size: int) -> np.ndarray:
    """Metric depth (m) at the 16 token frames and ``size``, NaN where invalid or not a raw sensor return."""
    from ..video import token_frame_indices

    tidx = token_frame_indices()
    gt = M.normalized_inverse_to_depth(clip.depth[tidx], clip.depth_range)  # [16, H, W] metres, NaN invalid
    raw = getattr(clip, "depth_raw_valid", None)
    inv = np.where(np.isfinite(gt), 1.0 / gt, np.nan)
    inv_s = resize_map(inv.astype(np.float32), size, valid=None if raw is None else raw[tidx])
    return np.where(np.isfinite(inv_s) & (inv_s > 0), 1.0 / inv_s, np.nan)


def _depth_score(pred, truth, ctx: ScoreContext) -> dict | None:
    if np.count_nonzero(np.isfinite(truth)) < 2:
        return None
    return M.depth_errors(pred, truth, space="inverse", depth_range=ctx.depth_range).as_dict()


def _depth_stitch(windows, starts, n):
    pred, idx = stitch_video(windows, starts, n, align_inverse_depth=True)
    return renormalize_inverse_depth(pred), idx


def _depth_plot(clip, preds: dict, truth, title: str = ""):
    from .. import viz

    (name, pred), = list(preds.items())[:1]
    inv = np.where(np.isfinite(truth), 1.0 / truth, np.nan)
    lo, hi = np.nanmin(inv), np.nanmax(inv)
    gt_norm = (inv - lo) / max(hi - lo, 1e-12)
    return viz.depth_strip(np.concatenate([gt_norm[::2], np.asarray(pred)[::2]]), n=16, fps=4,
                           title=title or f"depth: ground truth (first 8) and {name} (last 8)")


def _depth_describe(ctx: ScoreContext) -> list[str]:
    lo, hi = ctx.depth_range
    return ["AbsRel and delta<1.25 over valid ground-truth pixels of the 16 token frames (8 FPS) after one "
            "least-squares scale and shift per clip, fitted in inverse depth (the model predicts normalised inverse "
            "depth, affine-invariant in disparity); sensor depth is scored on raw sensor returns only (no "
            f"inpainted or filled pixel); aligned depth limited to the fixed range [{lo:g}, {hi:g}] m, no clamp "
            "from ground truth"]


def _metric_depth(row: dict) -> bool:
    return row.get("depth_source") in ("sensor", "render")


# --- RGB from depth ------------------------------------------------------------------------------


def _rgb_truth(clip, size: int) -> np.ndarray:
    return token_rgb(clip, size)


def _perceptual(ctx: ScoreContext):
    """(LPIPS net or None, I3D detector or None), loaded once per evaluation from ``ctx.weights_dir``."""
    if "lpips" not in ctx.cache:
        from ..perceptual import load_i3d, load_lpips

        ctx.cache["lpips"] = ctx.cache["i3d"] = None
        try:
            ctx.cache["lpips"] = load_lpips(ctx.weights_dir, "alex")
        except FileNotFoundError as e:
            ctx.note(f"LPIPS not computed: {e}")
        try:
            ctx.cache["i3d"] = load_i3d(ctx.weights_dir)
        except FileNotFoundError as e:
            ctx.note(f"FVD not computed: {e}")
    return ctx.cache["lpips"], ctx.cache["i3d"]


def _rgb_score(pred, truth, ctx: ScoreContext) -> dict:
    row = {"psnr": M.psnr(pred, truth), "ssim": M.ssim(pred, truth)}
    lp, _ = _perceptual(ctx)
    if lp is not None:
        from ..perceptual import lpips_video

        row["lpips"] = lpips_video(lp, pred, truth)
    return row


def _rgb_set_score(preds, truths, ctx: ScoreContext) -> dict:
    _, det = _perceptual(ctx)
    if det is None:
        return {}
    if len(preds) < 2:
        ctx.note("FVD needs at least 2 clips")
        return {}
    from ..perceptual import fvd

    return {"fvd": fvd(det, np.stack(preds), np.stack(truths))}


def _rgb_stitch(windows, starts, n):
    return stitch_video(windows, starts, n)


def _rgb_plot(clip, preds: dict, truth, title: str = ""):
    from .. import viz

    (name, pred), = list(preds.items())[:1]
    return viz.frame_strip(np.concatenate([truth[::2], np.asarray(pred)[::2]]), n=16, fps=4,
                           title=title or f"RGB: original (first 8) and {name} (last 8)")


def _rgb_describe(ctx: ScoreContext) -> list[str]:
    return ["PSNR/SSIM/LPIPS on the 16 token frames (8 FPS) per clip; FVD over all clips (I3D, 224x224)"]


# --- the table ----------------------------------------------------------------------------------

TASKS: dict[str, TaskSpec] = {
    "camera": TaskSpec(
        "camera", ("rgb",), "cam", "camera", "camera trajectory from RGB video", stride=CLIP_FRAMES - 1,
        video_output=False, align_windows=False,
        columns=(Column("ate", "ATE (m)", "{:.4f}", True, "m"), Column("rte", "RTE (m)", "{:.4f}", True, "m"),
                 Column("rre", "RRE (deg)", "{:.3f}", True, "deg")),
        main_metrics=("ate", "rre"), truth=_camera_truth, score=_camera_score, postprocess=geo.relative_to_first,
        baselines=B.CAMERA, stitch=_camera_stitch, write=W.write_camera, plot=_camera_plot,
        describe=_camera_describe, settings=("alignment",)),
    "gaze": TaskSpec(
        "gaze", ("rgb",), "gaze", "gaze", "eye-gaze dynamics from RGB video", stride=CLIP_FRAMES,
        video_output=False, align_windows=False, columns=(Column("mse", "MSE", "{:.4f}", True),),
        main_metrics=("mse",), truth=_gaze_truth, score=_gaze_score, postprocess=np.asarray, baselines=B.GAZE,
        stitch=_gaze_stitch, write=W.write_gaze, plot=_gaze_plot, describe=_gaze_describe),
    "depth": TaskSpec(
        "depth", ("rgb",), "depth", "depth", "video depth from RGB video", stride=45, video_output=True,
        align_windows=True,
        columns=(Column("abs_rel", "AbsRel", "{:.4f}", True), Column("delta1", "delta<1.25", "{:.4f}", False)),
        main_metrics=("abs_rel",), truth=_depth_truth, score=_depth_score, postprocess=np.asarray,
        baselines=B.DEPTH, stitch=_depth_stitch, write=W.write_depth, plot=_depth_plot, describe=_depth_describe,
        clip_filter=_metric_depth, gt_note=" with metric depth (sensor/render)", settings=("depth_range",)),
    "rgb": TaskSpec(
        "rgb", ("depth",), "rgb", "rgb_from_depth", "RGB video synthesis from a depth video", stride=CLIP_FRAMES,
        video_output=True, align_windows=False,
        columns=(Column("fvd", "FVD", "{:.2f}", True), Column("ssim", "SSIM", "{:.4f}", False),
                 Column("psnr", "PSNR", "{:.2f}", False, "db"), Column("lpips", "LPIPS", "{:.4f}", True)),
        main_metrics=("psnr", "ssim"), truth=_rgb_truth, score=_rgb_score, postprocess=np.asarray,
        baselines=B.RGB, stitch=_rgb_stitch, write=W.write_rgb, plot=_rgb_plot, describe=_rgb_describe,
        set_score=_rgb_set_score),
}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]


def task_for_target(modality: str) -> TaskSpec:
    """The task that generates ``modality`` (whose ground truth and metrics score that modality)."""
    for spec in TASKS.values():
        if spec.target == modality:
            return spec
    raise KeyError(f"no task generates {modality!r}")
