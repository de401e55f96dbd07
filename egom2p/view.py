"""Look at clips, predictions and evaluations in 3D with rerun.io (``egom2p view``).

What is shown, on one timeline (``frame``: 30 FPS index, and ``time`` in seconds), per side
(``gt``: a clip's ground truth or a prediction's input video; ``pred``: the model's output):

==================================  =====================================================================
entity                              content
==================================  =====================================================================
``world``                           OpenCV axes (x right, y down, z forward), metres; frame 0 = identity
``world/{side}/camera``             camera-to-world per frame (Transform3D) + intrinsics (Pinhole): a frustum
``world/{side}/camera/image``       the RGB frame seen by that camera (JPEG in the recording)
``world/{side}/camera/image/gaze``  the gaze point (gt); ``gaze_pred`` the predicted one, on the same image
``world/{side}/trajectory``         the camera path of the clip or sequence (LineStrips3D)
``world/{side}/points``             depth back-projected with the intrinsics and the pose (Points3D, RGB colours)
``depth/{side}``                    depth, colour-mapped (DepthImage, turbo)
``signals/{modality}/{side}``       a further registered modality (egom2p.modality), its features over time
``info``                            what is shown (clip id, split, sources, metrics) as markdown
==================================  =====================================================================

Sources (:func:`load_segments` picks by what ``SOURCE`` holds):

* a clips table (``<dataset>.lance``): one clip (``clip_ids``), a whole sequence (``sequence``:
  its clips in order on the sequence's own 30 FPS timeline, camera poses chained across the
  overlapping clips), or the first ``limit`` clips one after another;
* a prediction folder (``egom2p predict`` output: ``trajectory.tum.txt``, ``gaze.csv``,
  ``depth.npy`` + ``depth_frames.csv``, ``rgb.mp4`` + ``rgb_frames.csv``, ``predict.json``): the
  input video (from ``predict.json`` or ``video``) and every prediction found;
* an evaluation folder (``egom2p eval`` output: ``eval_<task>.json`` + ``eval_<task>_predictions.npz``):
  each evaluated clip's ground truth beside the model's output of every task found (camera aligned
  as the evaluation aligned it, depth fitted to the truth by the evaluation's scale and shift).

Depth becomes metres where it is known (``depth_range`` of a clip; a prediction fitted to the
ground truth); relative depth (affine-invariant sources, a prediction without ground truth) is
shown with an assumed inverse-depth range, ``assumed_range`` (near, far) metres, and says so in
``info``. A recording is saved with :func:`save` (``egom2p view --save FILE.rrd``) and read back with
:func:`summarize_rrd`; :func:`show` spawns, serves or connects to a viewer; :func:`show_in_notebook`
embeds one in Jupyter.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import geometry as geo
from . import metrics as M
from .errors import EgoM2PError
from .modalities import CLIP_FPS, CLIP_FRAMES

TIMELINE = "frame"
SIDES = ("gt", "pred")
ASSUMED_RANGE = (0.5, 10.0)  # metres: how relative (affine-invariant) inverse depth is shown
DEFAULT_FOV_DEG = 90.0  # horizontal field of view assumed for a prediction folder without intrinsics
COLORS = {"gt": (40, 200, 80), "pred": (230, 60, 40)}


class ViewError(EgoM2PError, ValueError):
    """A source cannot be shown; the message names the path and the problem."""


# --- what is shown ------------------------------------------------------------------------------


@dataclass
class Stream:
    """Values of one modality at 30 FPS frame indices (relative to the segment start)."""

    frames: np.ndarray  # int64 [n]
    values: np.ndarray  # [n, ...]

    def __post_init__(self):
        self.frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        if len(self.frames) != len(self.values):
            raise ViewError(f"{len(self.frames)} frame indices for {len(self.values)} values")


@dataclass
class Side:
    """Ground truth or prediction of one segment."""

    rgb: Stream | None = None  # uint8 [n, H, W, 3]
    depth: Stream | None = None  # float [n, H, W] metres, NaN invalid
    gaze: Stream | None = None  # float [n, 2] (x/W, y/H) of the image, NaN invalid
    cam: Stream | None = None  # float [n, 4, 4] camera-to-world, OpenCV axes
    intrinsics: np.ndarray | None = None  # (fx, fy, cx, cy) of an image of ``size``
    size: int | None = None  # side of the square standard image the intrinsics belong to
    notes: list[str] = field(default_factory=list)
    signals: dict = field(default_factory=dict)  # {modality: Stream [n, ...]}: further registered modalities

    @property
    def empty(self) -> bool:
        return all(getattr(self, m) is None for m in ("rgb", "depth", "gaze", "cam")) and not self.signals


@dataclass
class Segment:
    """One clip (or sequence) placed at ``start`` on the recording's timeline."""

    label: str
    start: int
    gt: Side | None = None
    pred: Side | None = None
    info: str = ""

    @property
    def length(self) -> int:
        n = 0
        for side in (self.gt, self.pred):
            for m in ("rgb", "depth", "gaze", "cam"):
                s = getattr(side, m, None) if side is not None else None
                if s is not None and len(s.frames):
                    n = max(n, int(s.frames.max()) + 1)
        return n


def default_intrinsics(size: int, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """(fx, fy, cx, cy) of a square ``size`` image with the given horizontal field of view."""
    f = 0.5 * size / np.tan(np.radians(fov_deg) / 2)
    return np.array([f, f, (size - 1) / 2, (size - 1) / 2])


def relative_depth_to_metres(norm_inv: np.ndarray, assumed_range=ASSUMED_RANGE) -> np.ndarray:
    """Normalised inverse depth [0, 1] (1 = nearest) shown as depth between ``assumed_range`` metres."""
    near, far = (float(v) for v in assumed_range)
    return M.normalized_inverse_to_depth(norm_inv, (1.0 / far, 1.0 / near))


def _scale_intrinsics(K: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Intrinsics of a square image resized from ``src`` to ``dst`` pixels (pixel centres at integers)."""
    s = dst / src
    fx, fy, cx, cy = K
    return np.array([fx * s, fy * s, (cx + 0.5) * s - 0.5, (cy + 0.5) * s - 0.5])


# --- ground truth from clips ------------------------------------------------------------------------


def clip_side(clip, assumed_range=ASSUMED_RANGE) -> Side:
    """The ground-truth side of a standard clip (metric depth where ``depth_range`` is known)."""
    n = clip.num_frames
    idx = np.arange(n)
    side = Side(intrinsics=np.asarray(clip.intrinsics, dtype=np.float64), size=int(clip.width))
    if clip.rgb is not None:
        side.rgb = Stream(idx, clip.rgb)
    if clip.depth is not None:
        if clip.depth_range is not None:
            side.depth = Stream(idx, M.normalized_inverse_to_depth(clip.depth, clip.depth_range).astype(np.float32))
        else:
            side.depth = Stream(idx, relative_depth_to_metres(clip.depth, assumed_range).astype(np.float32))
            side.notes.append(f"ground-truth depth is relative ({clip.depth_source}); shown between "
                              f"{assumed_range[0]} and {assumed_range[1]} m")
    if clip.gaze is not None:
        side.gaze = Stream(idx, clip.gaze)
    if clip.cam is not None:
        side.cam = Stream(idx, clip.cam.astype(np.float64))
    for name, values in clip.extra.items():  # a modality registered beyond these four: plotted over time
        side.signals[name] = Stream(idx, np.asarray(values, dtype=np.float64).reshape(n, -1))
    return side


def _clip_info(clip) -> str:
    return (f"**{clip.clip_id}** ({clip.split}); {clip.width}x{clip.height}, modalities {', '.join(clip.modalities)}; "
            f"depth source {clip.depth_source}")


def clips_segments(table, clip_ids=None, sequence: str | None = None, limit: int | None = None, version=None,
                   assumed_range=ASSUMED_RANGE) -> list[Segment]:
    """Clips of a clips table: the given ids, one whole ``sequence``, or the first ``limit`` (default 1)."""
    from .clips import clips_index, read_clips

    table = os.fspath(table)
    try:
        index = clips_index(table, version=version).to_pylist()
    except Exception as e:
        raise ViewError(f"{table}: not a readable clips table ({type(e).__name__}: {str(e)[:200]})") from e
    if clip_ids:
        known = {r["clip_id"] for r in index}
        missing = [c for c in clip_ids if c not in known]
        if missing:
            raise ViewError(f"{table}: no clip {missing[0]!r} (first clips: {sorted(known)[:3]})")
        ids = list(clip_ids)
    elif sequence is not None:
        rows = sorted((r for r in index if r["sequence"] == sequence), key=lambda r: r["start_frame"])
        if not rows:
            raise ViewError(f"{table}: no clips of sequence {sequence!r} "
                            f"(sequences: {sorted({r['sequence'] for r in index})[:5]})")
        return [_sequence_segment(table, [r["clip_id"] for r in rows], version, assumed_range)]
    else:
        ids = sorted(r["clip_id"] for r in index)[: max(1, limit or 1)]
    if not ids:
        raise ViewError(f"{table}: the clips table is empty")
    clips = {c.clip_id: c for c in read_clips(table, ids=ids, version=version)}
    return [Segment(cid, k * CLIP_FRAMES, gt=clip_side(clips[cid], assumed_range), info=_clip_info(clips[cid]))
            for k, cid in enumerate(ids)]


def _sequence_segment(table, ids, version, assumed_range) -> Segment:
    """One segment for a whole sequence: each clip's frames until the next clip starts, poses chained."""
    from .clips import read_clips

    clips = sorted(read_clips(table, ids=ids, version=version), key=lambda c: c.start_frame)
    s0 = clips[0].start_frame
    parts: dict[str, list] = {m: [] for m in ("rgb", "depth", "gaze", "cam")}
    frames: dict[str, list] = {m: [] for m in parts}
    base = np.eye(4)  # world pose of the current clip's first frame
    notes = []
    for k, c in enumerate(clips):
        side = clip_side(c, assumed_range)
        end = clips[k + 1].start_frame - c.start_frame if k + 1 < len(clips) else c.num_frames
        keep = slice(0, min(end, c.num_frames))
        if k > 0 and side.cam is not None:
            prev = clips[k - 1]
            step = c.start_frame - prev.start_frame
            if prev.cam is not None and 0 <= step < prev.num_frames and np.isfinite(prev.cam[step]).all():
                base = base @ prev.cam[step].astype(np.float64)
            else:
                notes.append(f"{c.clip_id}: no overlap with the previous clip; its poses restart at the origin")
                base = np.eye(4)
        for m in parts:
            s = getattr(side, m)
            if s is None:
                continue
            v = s.values[keep]
            if m == "cam":
                v = np.einsum("ij,njk->nik", base, v)
            parts[m].append(v)
            frames[m].append(c.start_frame - s0 + s.frames[keep])
    side = Side(intrinsics=np.asarray(clips[0].intrinsics, dtype=np.float64), size=int(clips[0].width), notes=notes)
    for m in parts:
        if parts[m]:
            setattr(side, m, Stream(np.concatenate(frames[m]), np.concatenate(parts[m])))
    c0 = clips[0]
    info = (f"**{c0.dataset}/{c0.sequence}**: {len(clips)} clips from frame {s0} "
            f"({(clips[-1].start_frame + c0.num_frames - s0) / CLIP_FPS:.1f} s), split {c0.split}")
    return Segment(f"{c0.dataset}/{c0.sequence}", 0, gt=side, info=info)


# --- predictions (egom2p predict) ---------------------------------------------------------------


def _read_frames_csv(path: Path) -> np.ndarray:
    with open(path) as f:
        return np.array([int(r["frame_30fps"]) for r in csv.DictReader(f)], dtype=np.int64)


def prediction_segments(folder, video=None, intrinsics=None, size: int | None = None,
                        assumed_range=ASSUMED_RANGE) -> list[Segment]:
    """The outputs of ``egom2p predict`` in ``folder`` beside its input video."""
    from .tasks import TaskInputError, load_video, read_tum

    folder = Path(folder)
    meta = {}
    if (folder / "predict.json").is_file():
        try:
            meta = json.loads((folder / "predict.json").read_text())
        except ValueError as e:
            raise ViewError(f"{folder / 'predict.json'}: unreadable ({e})") from e
    pred, notes = Side(), []
    if (folder / "trajectory.tum.txt").is_file():
        times, T = read_tum(folder / "trajectory.tum.txt")
        pred.cam = Stream(np.rint(np.asarray(times) * CLIP_FPS), T)
    if (folder / "gaze.csv").is_file():
        with open(folder / "gaze.csv") as f:
            rows = list(csv.DictReader(f))
        g = np.array([[float(r["x"]), float(r["y"])] if r["valid"] == "1" else [np.nan, np.nan] for r in rows])
        pred.gaze = Stream(np.rint(np.array([float(r["time_s"]) for r in rows]) * CLIP_FPS), g.reshape(-1, 2))
    if (folder / "depth.npy").is_file():
        d = np.load(folder / "depth.npy", allow_pickle=False)
        fr = _read_frames_csv(folder / "depth_frames.csv") if (folder / "depth_frames.csv").is_file() \
            else np.arange(len(d)) * CLIP_FPS // 8
        pred.depth = Stream(fr, relative_depth_to_metres(d, assumed_range).astype(np.float32))
        size = size or d.shape[-1]
        notes.append(f"predicted depth is relative (normalised inverse depth); shown between {assumed_range[0]} and "
                     f"{assumed_range[1]} m")
    if (folder / "rgb.mp4").is_file():
        from .video import decode

        frames = decode(folder / "rgb.mp4")
        fr = _read_frames_csv(folder / "rgb_frames.csv") if (folder / "rgb_frames.csv").is_file() \
            else np.arange(len(frames)) * CLIP_FPS // 8
        pred.rgb = Stream(fr[: len(frames)], frames[: len(fr)])
        size = size or frames.shape[1]
    if pred.empty:
        raise ViewError(f"{folder}: no prediction found (trajectory.tum.txt, gaze.csv, depth.npy or rgb.mp4)")
    size = int(size or 256)
    K = np.asarray(intrinsics, dtype=np.float64) if intrinsics is not None else default_intrinsics(size)
    if intrinsics is None:
        notes.append(f"intrinsics unknown: a {DEFAULT_FOV_DEG:.0f} degree field of view is assumed")
    pred.intrinsics, pred.size, pred.notes = K, size, notes
    gt = None
    src = video or meta.get("input")
    if src and Path(src).suffix.lower() not in (".npy", ".npz") and Path(src).is_file():
        try:
            vin = load_video(src, size)
        except TaskInputError as e:
            raise ViewError(str(e)) from e
        gt = Side(rgb=Stream(np.arange(len(vin.frames)), vin.frames), intrinsics=K, size=size,
                  notes=["no ground-truth pose: the input camera stays at the origin"])
    info = f"**prediction** {folder}" + (f" of {meta.get('task')} on {src}" if meta else "")
    return [Segment(str(folder), 0, gt=gt, pred=pred, info=info)]


# --- evaluations (egom2p eval) ------------------------------------------------------------------


def _eval_tables(folder: Path, report: dict, clips) -> list[str]:
    paths = [os.fspath(c) for c in clips] if clips else list(report.get("settings", {}).get("clips", []))
    out = []
    for p in paths:
        cands = [Path(p), folder / p, folder.parent / p]
        hit = next((c for c in cands if c.exists()), None)
        if hit is None:
            raise ViewError(f"{folder}: clips table {p} of the evaluation not found (pass --clips)")
        if hit.is_dir() and not hit.name.endswith(".lance"):
            out += sorted(str(t) for t in hit.glob("*.lance"))
        else:
            out.append(str(hit))
    return out


TASK_MODALITY = {"camera": "cam", "gaze": "gaze", "depth": "depth", "rgb": "rgb"}


def _pred_side(modality: str, pred: np.ndarray, gt: Side, alignment: str) -> tuple[Side, str]:
    """A model output (or a tokenizer reconstruction) of one modality of a clip, placed against its truth.

    ``cam`` [60, 4, 4] (aligned to the truth by ``alignment``), ``gaze`` [60, 2], ``depth`` [16, S, S]
    normalised inverse depth at the token frames (fitted to metric truth by scale and shift in
    inverse depth), ``rgb`` [16, S, S, 3] at the token frames.
    """
    from .video import token_frame_indices

    tf = token_frame_indices()
    side = Side(intrinsics=gt.intrinsics, size=gt.size)
    note = ""
    pred = np.asarray(pred)
    if modality == "cam":
        est = geo.relative_to_first(pred.astype(np.float64))
        if gt.cam is not None and alignment != "none":
            est, _ = M.align_trajectory(est, gt.cam.values, alignment)
            note = f"predicted camera aligned to the truth ({alignment})"
        side.cam = Stream(np.arange(len(est)), est)
    elif modality == "gaze":
        side.gaze = Stream(np.arange(len(pred)), pred.astype(np.float64))
    elif modality == "depth":
        S = pred.shape[-1]
        side.intrinsics, side.size = _scale_intrinsics(gt.intrinsics, gt.size, S), S
        depth = None
        if gt.depth is not None:
            from .tasks.inputs import resize_map as _resize_map

            ref = gt.depth.values[tf]
            inv = _resize_map(np.where(np.isfinite(ref) & (ref > 0), 1.0 / ref, np.nan), S)
            ref_s = np.where(np.isfinite(inv) & (inv > 0), 1.0 / inv, np.nan)
            try:
                depth, s, t = M.align_depth(pred, ref_s, space="inverse")
                note = f"predicted depth fitted to the truth in inverse depth (scale {s:.3g}, shift {t:.3g})"
            except ValueError:
                depth = None
        if depth is None:
            depth = relative_depth_to_metres(pred)
            note = f"predicted depth is relative; shown between {ASSUMED_RANGE[0]} and {ASSUMED_RANGE[1]} m"
        side.depth = Stream(tf, depth.astype(np.float32))
    elif modality == "rgb":
        S = pred.shape[-2]
        side.intrinsics, side.size = _scale_intrinsics(gt.intrinsics, gt.size, S), S
        side.rgb = Stream(tf, pred.astype(np.uint8))
    else:
        raise ViewError(f"unknown modality {modality!r}")
    return side, note


def compare_segment(clip, predictions: dict, alignment: str = "sim3", start: int = 0, info: str = "",
                    assumed_range=ASSUMED_RANGE) -> Segment:
    """A clip's truth beside ``predictions`` {modality: array} (model outputs or tokenizer reconstructions)."""
    gt = clip_side(clip, assumed_range)
    pred = Side()
    for m, v in predictions.items():
        if v is None:
            continue
        s, note = _pred_side(m, v, gt, alignment)
        pred = _merge(pred, s)
        if note:
            pred.notes.append(note)
    return Segment(clip.clip_id, start, gt=gt, pred=pred, info=info or _clip_info(clip))


def _merge(a: Side, b: Side) -> Side:
    """``a`` with the modalities ``b`` has (the image size of ``b`` when it brings images)."""
    for m in ("rgb", "depth", "gaze", "cam"):
        if getattr(b, m) is not None:
            setattr(a, m, getattr(b, m))
    if b.depth is not None or b.rgb is not None or a.intrinsics is None:
        a.intrinsics, a.size = b.intrinsics, b.size
    return a


def eval_segments(folder, clips=None, limit: int | None = None, assumed_range=ASSUMED_RANGE) -> list[Segment]:
    """Every clip an ``egom2p eval`` run in ``folder`` evaluated: ground truth beside the model's output."""
    from .clips import read_clips

    folder = Path(folder)
    reports = sorted(folder.glob("eval_*.json"))
    if not reports:
        raise ViewError(f"{folder}: no eval_<task>.json (an `egom2p eval --out` folder)")
    preds: dict[str, dict[str, np.ndarray]] = {}  # clip id -> task -> prediction
    tables, tables_seen, metrics_md = [], set(), []
    settings = {}
    for rp in reports:
        report = json.loads(rp.read_text())
        task = report["task"]
        settings[task] = report.get("settings", {})
        pfile = folder / report.get("predictions", f"eval_{task}_predictions.npz")
        if not pfile.is_file():
            raise ViewError(f"{rp}: no predictions file {pfile.name} beside it (re-run `egom2p eval` with this version)")
        with np.load(pfile, allow_pickle=False) as z:
            ids, values = [str(c) for c in z["clip_ids"]], z["prediction"]
        for cid, v in zip(ids, values):
            preds.setdefault(cid, {})[task] = v
        for t in _eval_tables(folder, report, clips):
            if t not in tables_seen:
                tables_seen.add(t)
                tables.append(t)
        md = rp.with_suffix(".md")
        if md.is_file():
            metrics_md.append(md.read_text())
    ids = sorted(preds)[: limit or None]
    found = {}
    for t in tables:
        for c in read_clips(t, ids=[i for i in ids if i not in found]):
            found[c.clip_id] = c
    missing = [i for i in ids if i not in found]
    if missing:
        raise ViewError(f"{folder}: evaluated clip {missing[0]} not in {', '.join(tables)}")
    segs = []
    for k, cid in enumerate(ids):
        seg_preds = {TASK_MODALITY[t]: v for t, v in sorted(preds[cid].items())}
        align = next((settings[t].get("alignment") for t in preds[cid] if t == "camera"), None) or "none"
        info = _clip_info(found[cid]) + "\n\n" + "\n\n".join(metrics_md)
        segs.append(compare_segment(found[cid], seg_preds, align, k * CLIP_FRAMES, info, assumed_range))
    return segs


def source_kind(source) -> str:
    """``clips``, ``prediction`` or ``eval``: what ``source`` holds."""
    p = Path(source)
    if not p.exists():
        raise ViewError(f"{p}: not found")
    if p.suffix == ".lance" or (p / "_versions").is_dir():
        return "clips"
    if p.is_dir() and any(p.glob("eval_*.json")):
        return "eval"
    if p.is_dir() and any((p / f).is_file() for f in ("trajectory.tum.txt", "gaze.csv", "depth.npy", "rgb.mp4")):
        return "prediction"
    raise ViewError(f"{p}: neither a clips table (*.lance), an `egom2p predict` folder nor an `egom2p eval` folder")


def load_segments(source, *, clip_ids=None, sequence=None, limit=None, video=None, intrinsics=None, clips=None,
                  assumed_range=ASSUMED_RANGE) -> list[Segment]:
    """Segments to show for ``source`` (a clips table, a prediction folder or an eval folder)."""
    kind = source_kind(source)
    if kind == "clips":
        return clips_segments(source, clip_ids, sequence, limit, assumed_range=assumed_range)
    if kind == "prediction":
        return prediction_segments(source, video, intrinsics, assumed_range=assumed_range)
    return eval_segments(source, clips, limit, assumed_range)


# --- logging to rerun -----------------------------------------------------------------------------


def _set_frame(rec, frame: int) -> None:
    rec.set_time(TIMELINE, sequence=int(frame))
    rec.set_time("time", duration=float(frame) / CLIP_FPS)


def _pinhole(rr, K, size: int):
    fx, fy, cx, cy = (float(v) for v in K)
    return rr.Pinhole(image_from_camera=[[fx, 0, cx], [0, fy, cy], [0, 0, 1]], resolution=[size, size],
                      camera_xyz=rr.ViewCoordinates.RDF, image_plane_distance=0.15)


def _points(depth: np.ndarray, K, c2w: np.ndarray, rgb: np.ndarray | None, stride: int):
    """World points [k, 3] and colours of one depth frame (every ``stride``-th pixel, valid depth only)."""
    d = depth[::stride, ::stride].astype(np.float64)
    h, w = d.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64) * stride
    ok = np.isfinite(d) & (d > 0)
    pc = geo.unproject(np.stack([u[ok], v[ok]], -1), d[ok], K)
    pw = geo.transform_points(c2w, pc)
    col = None
    if rgb is not None:
        if rgb.shape[:2] != depth.shape:
            import cv2

            rgb = cv2.resize(np.ascontiguousarray(rgb), (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_AREA)
        col = rgb[::stride, ::stride][ok]
    return pw.astype(np.float32), col


def _log_camera(rr, rec, seg: Segment, name: str, side: Side, K, size: int) -> None:
    base = f"world/{name}"
    _set_frame(rec, seg.start)
    rec.log(f"{base}/camera", _pinhole(rr, K, size))
    if side.cam is None:  # an image without a pose: the camera stays at the origin
        rec.log(f"{base}/camera", rr.Transform3D(translation=[0, 0, 0]))
        return
    ok = np.isfinite(side.cam.values).all(axis=(1, 2))
    rec.log(f"{base}/trajectory", rr.LineStrips3D([side.cam.values[ok, :3, 3]], colors=[COLORS[name]],
                                                  radii=rr.Radius.ui_points(2.0)))
    for f, T in zip(side.cam.frames[ok], side.cam.values[ok]):
        _set_frame(rec, seg.start + f)
        rec.log(f"{base}/camera", rr.Transform3D(translation=T[:3, 3], mat3x3=T[:3, :3]))


def _log_gaze(rr, rec, seg: Segment, name: str, side: Side, image: str, size: int) -> None:
    ent = f"{image}/gaze" if name == "gt" else f"{image}/gaze_pred"
    for f, g in zip(side.gaze.frames, side.gaze.values):
        _set_frame(rec, seg.start + f)
        g = np.asarray(g, dtype=np.float64)
        px = geo.normalized_to_pixels(g[None], size, size) if np.isfinite(g).all() else np.zeros((0, 2))
        rec.log(ent, rr.Points2D(px, colors=[COLORS[name]], radii=rr.Radius.ui_points(6.0)))  # empty: no valid gaze


def _log_depth(rr, rec, seg: Segment, name: str, side: Side, K, size: int, point_stride: int) -> None:
    poses = [x.cam for x in (side, seg.gt) if x is not None and x.cam is not None]  # own pose, else the truth's
    cam_at = {int(f): T for f, T in zip(poses[0].frames, poses[0].values)} if poses else {}
    images = [x.rgb for x in (side, seg.gt) if x is not None and x.rgb is not None]
    rgb_at = {int(f): im for f, im in zip(images[0].frames, images[0].values)} if images else {}
    for f, d in zip(side.depth.frames, side.depth.values):
        _set_frame(rec, seg.start + f)
        rec.log(f"depth/{name}", rr.DepthImage(np.where(np.isfinite(d), d, 0).astype(np.float16), meter=1.0,
                                               colormap="turbo"))
        T = cam_at.get(int(f), np.eye(4))
        if not np.isfinite(T).all():
            continue
        Kd = _scale_intrinsics(K, size, d.shape[-1]) if d.shape[-1] != size else K
        pts, col = _points(d, Kd, T, rgb_at.get(int(f)), point_stride)
        rec.log(f"world/{name}/points", rr.Points3D(pts, colors=col if col is not None else [COLORS[name]],
                                                    radii=rr.Radius.ui_points(1.5)))


def log_segment(rec, seg: Segment, point_stride: int = 4, jpeg_quality: int = 90) -> None:
    """Log one segment at its place on the timeline (see the module docstring for the entities)."""
    import rerun as rr

    _set_frame(rec, seg.start)
    notes = "".join(f"\n\n* {n}" for s in (seg.gt, seg.pred) if s for n in s.notes)
    rec.log("info", rr.TextDocument(seg.info + notes, media_type="text/markdown"))
    # gaze of both sides goes on the first image (truth beside prediction)
    image_side = next((n for n in SIDES if getattr(seg, n) is not None and getattr(seg, n).rgb is not None), None)
    for name in SIDES:
        side = getattr(seg, name)
        if side is None or side.empty:
            continue
        size = side.size or 256
        K = side.intrinsics if side.intrinsics is not None else default_intrinsics(size)
        if side.cam is not None or side.rgb is not None:
            _log_camera(rr, rec, seg, name, side, K, size)
        if side.rgb is not None:
            for f, im in zip(side.rgb.frames, side.rgb.values):
                _set_frame(rec, seg.start + f)
                rec.log(f"world/{name}/camera/image",
                        rr.Image(np.ascontiguousarray(im)).compress(jpeg_quality=jpeg_quality))
        if side.gaze is not None:
            on = image_side or name
            _log_gaze(rr, rec, seg, name, side, f"world/{on}/camera/image", getattr(seg, on).size or size)
        if side.depth is not None:
            _log_depth(rr, rec, seg, name, side, K, size, point_stride)
        for modality, stream in side.signals.items():
            for f, v in zip(stream.frames, stream.values):
                _set_frame(rec, seg.start + f)
                rec.log(f"signals/{modality}/{name}", rr.Scalars(v))


def blueprint(segments: list[Segment]):
    """A layout: the 3D world on the left, the images (with gaze) and depth maps on the right."""
    import rerun.blueprint as rrb

    sides = [s for s in SIDES if any(getattr(g, s) is not None and not getattr(g, s).empty for g in segments)]
    images = [rrb.Spatial2DView(origin=f"world/{s}/camera/image", name=f"{s} image")
              for s in sides if any(getattr(g, s) is not None and getattr(g, s).rgb is not None for g in segments)]
    depths = [rrb.Spatial2DView(origin=f"depth/{s}", name=f"{s} depth")
              for s in sides if any(getattr(g, s) is not None and getattr(g, s).depth is not None for g in segments)]
    right = [v for v in (rrb.Horizontal(*images) if images else None, rrb.Horizontal(*depths) if depths else None,
                         rrb.TextDocumentView(origin="info", name="info")) if v is not None]
    return rrb.Blueprint(rrb.Horizontal(rrb.Spatial3DView(origin="world", name="3D"), rrb.Vertical(*right),
                                        column_shares=[3, 2]), collapse_panels=True)


def record(segments: list[Segment], recording=None, point_stride: int = 4, application_id: str = "egom2p"):
    """Log ``segments`` into a recording stream (a new one unless ``recording`` is given)."""
    import rerun as rr

    rec = recording or rr.RecordingStream(application_id)
    rec.log("world", rr.ViewCoordinates.RDF, static=True)
    for seg in segments:
        log_segment(rec, seg, point_stride)
    return rec


def save(segments: list[Segment], path, point_stride: int = 4) -> Path:
    """Write ``segments`` as a rerun recording (``.rrd``) without a viewer."""
    import rerun as rr

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = rr.RecordingStream("egom2p")
    rec.save(path)
    _send_layout(rec, segments)
    record(segments, rec, point_stride)
    _flush(rec, str(path))
    rec.disconnect()
    return path


def show(segments: list[Segment], mode: str = "spawn", url: str | None = None, point_stride: int = 4,
         web_port: int | None = None, grpc_port: int | None = None):
    """Show ``segments`` in a viewer: ``spawn`` a native one, ``serve`` a web viewer, or ``connect`` to ``url``.

    Returns (recording stream, address served or connected to). With ``serve`` the servers live as
    long as the returned stream (keep a reference while the viewer is used).
    """
    import rerun as rr

    rec = rr.RecordingStream("egom2p")
    where = None
    if mode == "spawn":
        rec.spawn()
    elif mode == "connect":
        rec.connect_grpc(url)
        where = url
    elif mode == "serve":
        where = rec.serve_grpc(grpc_port=grpc_port)
        rr.serve_web_viewer(web_port=web_port, open_browser=False, connect_to=where)
    else:
        raise ViewError(f"unknown viewer mode {mode!r} (spawn, serve, connect)")
    _send_layout(rec, segments)
    record(segments, rec, point_stride)
    _flush(rec, where or "the viewer")
    return rec, where


def _send_layout(rec, segments: list[Segment]) -> None:
    """Send ``blueprint(segments)`` as the default layout, once ``rec``'s sink is set.

    Never as the sink's ``default_blueprint``: rerun 0.33's save/serve_grpc/connect_grpc keep the GIL
    while they hand that blueprint to the new sink, whose worker thread needs the GIL to free the
    blueprint's Python-owned arrays, so now and then both wait forever (gdb: ``set_sink`` waiting on the
    forwarding thread, a tokio worker in ``PyGILState_Ensure``).
    """
    rec.send_blueprint(blueprint(segments), make_active=False, make_default=True)


FLUSH_TIMEOUT_S = 60.0


def _flush(rec, where: str) -> None:
    """Flush ``rec`` to its sink, failing in one line after FLUSH_TIMEOUT_S instead of waiting forever."""
    try:
        rec.flush(timeout_sec=FLUSH_TIMEOUT_S)
    except Exception as e:  # rerun raises its own error type on a timeout
        raise ViewError(f"{where}: the recording did not reach the viewer in {FLUSH_TIMEOUT_S:.0f} s ({e})") from e


def show_in_notebook(segments: list[Segment], width: int = 1000, height: int = 600, point_stride: int = 4):
    """The same recording in a Jupyter notebook (rerun's notebook widget, package rerun-notebook)."""
    import rerun as rr

    rec = rr.RecordingStream("egom2p")
    record(segments, rec, point_stride)
    rec.notebook_show(width=width, height=height, blueprint=blueprint(segments))
    return rec


# --- reading a recording back ---------------------------------------------------------------------


def summarize_rrd(path) -> dict[str, dict]:
    """{entity: {"frames": distinct ``frame`` values logged, "components": [...], "static": bool}} of an .rrd."""
    from rerun.experimental import RrdReader

    out: dict[str, dict] = {}
    frames: dict[str, set] = {}
    for chunk in RrdReader(path).store().stream():
        ent = str(chunk.entity_path).lstrip("/")
        e = out.setdefault(ent, {"frames": 0, "components": set(), "static": False})
        batch = chunk.to_record_batch()
        e["components"] |= {n for n in batch.schema.names if ":" in n}
        if chunk.is_static:
            e["static"] = True
        elif TIMELINE in batch.schema.names:
            frames.setdefault(ent, set()).update(batch.column(TIMELINE).to_pylist())
    for ent, e in out.items():
        e["frames"] = len(frames.get(ent, ()))
        e["components"] = sorted(e["components"])
    return dict(sorted(out.items()))
