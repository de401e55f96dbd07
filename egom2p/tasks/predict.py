"""A task on a whole video file: preprocess, window, run, stitch, write (``egom2p predict``).

:func:`run_task` reads the task's inputs (an RGB video, or a depth video for RGB synthesis), cuts
them into windows (:func:`egom2p.tasks.inputs.plan_windows`), runs the model
(:class:`~.runner.TaskRunner`) and stitches the windows with the task's ``stitch``.
:func:`reference_trajectory` puts a ground-truth trajectory (a TUM file or a clip of a clips
table) beside a camera prediction; :func:`write_outputs` writes a result with the task's writer.

Outputs: camera [N, 4, 4] camera-to-world (frame 0 = identity) at 30 FPS; gaze [N, 2] normalised
(x/W, y/H) at 30 FPS; depth [M, S, S] normalised inverse depth at the token frames (8 FPS, one scale
for the whole video); RGB uint8 [M, S, S, 3] at the token frames. ``frame_index`` gives the 30 FPS
frame of each output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import geometry as geo
from .. import metrics as M
from ..modalities import CLIP_FPS
from .inputs import DepthInput, VideoInput, cut_windows, depth_windows, load_depth, load_video, plan_windows
from .runner import TaskRunner, Timing
from .spec import TaskInputError
from .table import get_task
from .writers import read_tum


@dataclass
class TaskResult:
    task: str
    prediction: np.ndarray  # see module docstring for each task's output
    frame_index: np.ndarray  # [M] 30 FPS frame of each output frame
    times: np.ndarray  # [M] seconds
    starts: list[int]
    timing: Timing
    video: VideoInput | None = None
    depth: DepthInput | None = None
    padding: int = 0  # frames repeated after the last frame to complete the last window
    reference: dict | None = None  # ground truth put beside the prediction (reference_trajectory)


def _load_inputs(spec, size: int, video, depth, depth_fps: float, depth_kind: str):
    """(VideoInput or None, DepthInput or None, {modality: input}) of a task's inputs, read from the given files."""
    loaders = {  # modality -> (file, flag that gives it, reader)
        "rgb": (video, "--video", lambda p: load_video(p, size)),
        "depth": (depth, "--depth (a .npy/.npz depth video)",
                  lambda p: load_depth(p, size, fps=depth_fps, kind=depth_kind)),
    }
    loaded = {}
    for m in spec.inputs:
        path, flag, read = loaders[m]
        if path is None:
            raise TaskInputError(f"task {spec.name} needs {flag}")
        loaded[m] = read(path)
    if "rgb" not in loaded and video is not None:  # shown beside the result by writers that use it
        loaded["rgb"] = load_video(video, size)
    vin, din = loaded.get("rgb"), loaded.get("depth")
    return vin, din, {m: loaded[m] for m in spec.inputs}


def _num_frames(x) -> int:
    return len(x.inverse) if isinstance(x, DepthInput) else len(x.frames)


def _windows(x, starts: list[int], padding: int) -> np.ndarray:
    return depth_windows(x, starts, padding) if isinstance(x, DepthInput) else cut_windows(x.frames, starts, padding)


def run_task(runner: TaskRunner, task: str, video=None, depth=None, depth_fps: float = CLIP_FPS,
             depth_kind: str = "metric", stride: int | None = None, batch_size: int = 8,
             progress: bool = True) -> TaskResult:
    """A task on a whole video file (any length >= 2 s): preprocess, window, run, stitch."""
    spec = get_task(task)
    vin, din, sources = _load_inputs(spec, runner.image_size(), video, depth, depth_fps, depth_kind)
    n = min(_num_frames(x) for x in sources.values())
    starts, padding = plan_windows(spec, n, stride)
    inputs = {m: _windows(x, starts, padding) for m, x in sources.items()}
    timing = Timing()
    out = runner.run(spec, inputs, batch_size=batch_size, timing=timing, progress=progress)
    try:
        pred, idx = spec.stitch(out, starts, n)
    except ValueError as e:
        raise TaskInputError(f"{video or depth}: {e}") from e
    return TaskResult(task, pred, idx, idx / CLIP_FPS, starts, timing, vin, din, padding)


def write_outputs(result: TaskResult, out_dir) -> dict[str, str]:
    """Write a task's result in common formats (the task's writer); returns {kind: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return get_task(result.task).write(result, out)


# --- ground truth beside a camera prediction ------------------------------------------------------


def _clip_reference(clip_id: str, tables) -> tuple[np.ndarray, np.ndarray, str]:
    """(30 FPS frames of the video, poses) of a clip: the clip's frames are those of its source sequence."""
    from ..clips import read_clips

    if not tables:
        raise TaskInputError(f"--gt {clip_id}: not a file; to use a clip id give the clips table with --gt-clips")
    for t in tables:
        for c in read_clips(t, ids=[clip_id], decode_rgb=False, decode_depth=False):
            if c.cam is None:
                raise TaskInputError(f"{t}: clip {clip_id} has no camera poses")
            return c.start_frame + np.arange(len(c.cam)), c.cam.astype(np.float64), f"clip {clip_id}"
    raise TaskInputError(f"--gt {clip_id}: no such clip in {', '.join(map(str, tables))}")


def reference_trajectory(prediction: np.ndarray, gt, tables=(), alignment: str = M.DEFAULT_ALIGNMENT) -> dict:
    """Ground truth for a predicted trajectory [N, 4, 4] (30 FPS, frame 0 = the video's first frame).

    ``gt`` is a TUM file (timestamps in seconds; the first timestamp is the video's first frame) or
    a clip id of one of ``tables`` (a clip of the video's source sequence: its ``start_frame`` is
    the video frame it starts at). Ground-truth poses are matched to video frames by nearest time
    (within half a frame), both trajectories are taken relative to the first matched frame, the
    prediction is aligned to the ground truth (``alignment``) and scored by
    :func:`egom2p.metrics.trajectory_errors`. Returns {"source", "frames", "poses", "aligned_prediction",
    "alignment", "errors"}.
    """
    from ..video import nearest_indices

    n = len(prediction)
    gt_s = os.fspath(gt)
    if os.path.isfile(gt_s):
        times, poses = read_tum(gt_s)
        order = np.argsort(times)
        times, poses = times[order] - times[order][0], poses[order]
        near = nearest_indices(np.arange(n) / CLIP_FPS, times, max_gap=0.5 / CLIP_FPS)
        keep = near >= 0
        frames, poses, source = near[keep], poses[keep], Path(gt_s).name
    else:
        frames, poses, source = _clip_reference(gt_s, tables)
        keep = frames < n
        frames, poses = frames[keep], poses[keep]
    if len(frames) < 2:
        raise TaskInputError(f"--gt {gt_s}: fewer than 2 ground-truth poses fall on the video's {n} frames "
                             f"({n / CLIP_FPS:.2f} s)")
    ref = geo.relative_to_first(poses)
    est = geo.relative_to_first(np.asarray(prediction, dtype=np.float64)[frames])
    errors = M.trajectory_errors(est, ref, alignment)
    aligned = est if alignment == "none" or np.ptp(est[:, :3, 3], axis=0).max() < 1e-12 else \
        M.align_trajectory(est, ref, alignment)[0]
    return {"source": source, "frames": frames, "poses": ref, "aligned_prediction": aligned, "alignment": alignment,
            "errors": errors.as_dict()}
