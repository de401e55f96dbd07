"""Task outputs in common formats: TUM trajectories, gaze CSV and overlay video, depth .npy/.mp4, RGB .mp4.

Each task's writer (``write_camera``, ``write_gaze``, ``write_depth``, ``write_rgb``) is named by its
row of the task table; :func:`egom2p.tasks.predict.write_outputs` calls the right one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import geometry as geo
from ..modalities import CLIP_FPS, VIDEO_TOKEN_FPS
from .spec import TaskInputError


def write_tum(path, times: np.ndarray, poses: np.ndarray) -> None:
    """TUM trajectory text: ``timestamp tx ty tz qx qy qz qw`` per line (camera-to-world)."""
    q = geo.matrix_to_quat(np.asarray(poses)[:, :3, :3], order="xyzw")
    t = np.asarray(poses)[:, :3, 3]
    with open(path, "w") as f:
        f.write("# timestamp tx ty tz qx qy qz qw  (camera-to-world, OpenCV camera axes, frame 0 = identity)\n")
        for ts, p, qq in zip(times, t, q):
            f.write(f"{ts:.6f} " + " ".join(f"{v:.9f}" for v in (*p, *qq)) + "\n")


def read_tum(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory -> (times [N], camera-to-world [N, 4, 4])."""
    try:
        rows = np.loadtxt(path, comments="#", ndmin=2)
    except (OSError, ValueError) as e:
        raise TaskInputError(f"{path}: cannot read a TUM trajectory ({type(e).__name__}: {str(e)[:200]})") from e
    if rows.shape[0] == 0 or rows.shape[1] != 8:
        raise TaskInputError(f"{path}: TUM lines need 8 numbers (timestamp tx ty tz qx qy qz qw), got {rows.shape[1]}")
    T = geo.make_se3(geo.quat_to_matrix(rows[:, 4:8], order="xyzw"), rows[:, 1:4])
    return rows[:, 0], T


def plot_trajectory(path, poses: np.ndarray, reference: np.ndarray | None = None, title: str = "",
                    frames: np.ndarray | None = None, label: str = "predicted",
                    reference_label: str = "ground truth") -> None:
    """PNG: top view (x-z, OpenCV: z forward), side view (z vs -y) and per-axis translation over time.

    ``reference`` is drawn dashed beside the prediction; ``frames`` are the 30 FPS frames of the
    poses (default 0, 1, ...; the same for both).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = np.asarray(poses)[:, :3, 3]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4.2))
    ax[0].plot(p[:, 0], p[:, 2], "-", label=label)
    ax[0].plot(p[:1, 0], p[:1, 2], "o", color="k", label="start")
    ax[1].plot(p[:, 2], -p[:, 1], "-")
    t = (np.arange(len(p)) if frames is None else np.asarray(frames)) / CLIP_FPS
    for k, name in enumerate("xyz"):
        ax[2].plot(t, p[:, k], label=f"{name} {label}", color=f"C{k}")
    if reference is not None:
        r = np.asarray(reference)[:, :3, 3]
        rt = (np.arange(len(r)) if frames is None else np.asarray(frames)) / CLIP_FPS
        ax[0].plot(r[:, 0], r[:, 2], "--", color="k", label=reference_label)
        ax[1].plot(r[:, 2], -r[:, 1], "--", color="k")
        for k, name in enumerate("xyz"):
            ax[2].plot(rt, r[:, k], "--", color=f"C{k}", label=f"{name} {reference_label}")
    ax[0].set(xlabel="x (m)", ylabel="z forward (m)", title="top view")
    ax[0].axis("equal")
    ax[0].legend()
    ax[1].set(xlabel="z forward (m)", ylabel="up = -y (m)", title="side view")
    ax[1].axis("equal")
    ax[2].set(xlabel="time (s)", ylabel="translation (m)", title="translation")
    ax[2].legend(fontsize=7, ncol=2)
    fig.suptitle(title or "camera trajectory")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_gaze_csv(path, times: np.ndarray, gaze: np.ndarray, size: int) -> None:
    """CSV: frame, time_s, x, y (normalised [0,1] of the square standard image), x_px, y_px, valid."""
    g = np.asarray(gaze, dtype=np.float64)
    px = geo.normalized_to_pixels(g, size, size)
    with open(path, "w") as f:
        f.write("frame,time_s,x,y,x_px,y_px,valid\n")
        for i, (t, xy, uv) in enumerate(zip(times, g, px)):
            ok = bool(np.all(np.isfinite(xy)))
            f.write(f"{i},{t:.6f},{xy[0]:.6f},{xy[1]:.6f},{uv[0]:.2f},{uv[1]:.2f},{int(ok)}\n")


def _even(frames: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    return frames[:, : h - h % 2, : w - w % 2]


def gaze_overlay(frames: np.ndarray, gaze: np.ndarray) -> np.ndarray:
    """Draw the gaze point (circle + cross) on uint8 frames [N, S, S, 3] -> new frames."""
    import cv2

    out = np.ascontiguousarray(frames.copy())
    n, h, w = out.shape[:3]
    px = geo.normalized_to_pixels(np.asarray(gaze, dtype=np.float64), w, h)
    r = max(3, w // 24)
    for i in range(n):
        if np.all(np.isfinite(px[i])):
            c = (int(round(px[i, 0])), int(round(px[i, 1])))
            cv2.circle(out[i], c, r, (255, 40, 40), max(1, w // 128), lineType=cv2.LINE_AA)
            cv2.drawMarker(out[i], c, (255, 255, 0), cv2.MARKER_CROSS, r, 1)
    return out


def colorize_depth(norm_inv: np.ndarray) -> np.ndarray:
    """Normalised inverse depth [M, S, S] (NaN invalid) -> uint8 RGB [M, S, S, 3] (turbo; near = warm)."""
    import cv2

    d = np.nan_to_num(np.clip(np.asarray(norm_inv, dtype=np.float32), 0, 1), nan=0.0)
    u8 = (d * 255).astype(np.uint8)
    out = np.stack([cv2.applyColorMap(f, cv2.COLORMAP_TURBO)[..., ::-1] for f in u8])
    out[~np.isfinite(norm_inv)] = 0
    return np.ascontiguousarray(out)


def _write_index(path, frame_index: np.ndarray) -> None:
    with open(path, "w") as f:
        f.write("output_frame,frame_30fps,time_s\n")
        for i, fi in enumerate(frame_index):
            f.write(f"{i},{int(fi)},{fi / CLIP_FPS:.6f}\n")


# --- one writer per task (the task table's ``write``) ----------------------------------------------


def write_camera(result, out: Path) -> dict[str, str]:
    """trajectory.tum.txt + trajectory.png (the reference trajectory beside it when the result has one)."""
    paths = {"tum": str(out / "trajectory.tum.txt"), "plot": str(out / "trajectory.png")}
    write_tum(paths["tum"], result.times, result.prediction)
    name = Path(result.video.path).name if result.video is not None else "video"
    ref = result.reference
    if ref is None:
        plot_trajectory(paths["plot"], result.prediction, title=f"camera trajectory: {name}")
    else:
        e = ref["errors"]
        plot_trajectory(paths["plot"], ref["aligned_prediction"], ref["poses"], frames=ref["frames"],
                        label=f"predicted ({ref['alignment']}-aligned)",
                        title=f"camera trajectory: {name} vs {ref['source']}: ATE {e['ate']:.3f} m, "
                              f"RRE {e['rre']:.2f} deg over {len(ref['frames'])} frames")
    return paths


def write_gaze(result, out: Path) -> dict[str, str]:
    """gaze.csv + gaze_overlay.mp4."""
    from ..video import encode_h264

    size = result.video.frames.shape[1]
    paths = {"csv": str(out / "gaze.csv"), "overlay": str(out / "gaze_overlay.mp4")}
    write_gaze_csv(paths["csv"], result.times, result.prediction, size)
    encode_h264(_even(gaze_overlay(result.video.frames, result.prediction)), fps=CLIP_FPS, path=paths["overlay"])
    return paths


def write_depth(result, out: Path) -> dict[str, str]:
    """depth.npy (normalised inverse depth at the token frames) + depth_frames.csv + depth.mp4 (8 FPS)."""
    from ..video import encode_h264

    paths = {"npy": str(out / "depth.npy"), "frames": str(out / "depth_frames.csv"), "video": str(out / "depth.mp4")}
    np.save(paths["npy"], result.prediction.astype(np.float32))
    _write_index(paths["frames"], result.frame_index)
    encode_h264(_even(colorize_depth(result.prediction)), fps=VIDEO_TOKEN_FPS, path=paths["video"])
    return paths


def write_rgb(result, out: Path) -> dict[str, str]:
    """rgb.mp4 (8 FPS) + rgb_frames.csv."""
    from ..video import encode_h264

    paths = {"video": str(out / "rgb.mp4"), "frames": str(out / "rgb_frames.csv")}
    encode_h264(_even(np.asarray(result.prediction, dtype=np.uint8)), fps=VIDEO_TOKEN_FPS, path=paths["video"])
    _write_index(paths["frames"], result.frame_index)
    return paths
