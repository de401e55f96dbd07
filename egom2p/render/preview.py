"""Contact sheet of a rendered sequence folder: frames with the gaze dot, depth, and a top-down map.

``write_preview(seq_dir)`` reads the sequence from disk (so it shows what the adapter will read)
and writes ``seq_dir/preview.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import geometry as geo
from .reader import load_array, read_manifest, read_rgb


def gaze_pixels(c2w_opengl: np.ndarray, intrinsics, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world fixation points into each frame: (pixels [N, 2], z [N]) (NaN behind the camera)."""
    T = geo.opengl_to_opencv_c2w(c2w_opengl)
    pc = geo.transform_points(geo.invert_se3(T), points_world)
    return geo.project(pc, intrinsics)


def write_preview(seq_dir, columns: int = 8, out_path=None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    seq_dir = Path(seq_dir)
    man = read_manifest(seq_dir)
    n = man["num_frames"]
    idx = np.unique(np.linspace(0, n - 1, min(columns, n)).round().astype(int))
    rgb = read_rgb(seq_dir, man, idx)
    depth = np.asarray(load_array(seq_dir / "depth.npy", mmap=True)[idx], dtype=np.float32)
    T = load_array(seq_dir / "c2w_opengl.npy")
    K = json.loads((seq_dir / "intrinsics.json").read_text())
    k = np.array([K["fx"], K["fy"], K["cx"], K["cy"]])
    gp = load_array(seq_dir / "gaze_point_world.npy")
    gv = load_array(seq_dir / "gaze_valid.npy")
    gs = load_array(seq_dir / "gaze_state.npy")
    scene = json.loads((seq_dir / "scene.json").read_text())
    uv, _ = gaze_pixels(T, k, gp)

    c = len(idx)
    fig = plt.figure(figsize=(2.0 * c + 5.0, 4.4), dpi=100)
    outer = fig.add_gridspec(1, 2, width_ratios=[2.0 * c + 0.3, 4.2], wspace=0.12)
    gs_ = outer[0].subgridspec(2, c + 1, width_ratios=[1] * c + [0.06], wspace=0.05, hspace=0.12)
    vmax = float(np.percentile(depth[depth > 0], 99)) if (depth > 0).any() else 1.0
    for j, i in enumerate(idx):
        ax = fig.add_subplot(gs_[0, j])
        ax.imshow(rgb[j])
        if gv[i] and np.isfinite(uv[i]).all():
            ax.add_patch(plt.Circle((uv[i, 0], uv[i, 1]), max(2.0, man["width"] / 40), fill=False, color="lime", lw=2))
            ax.plot(uv[i, 0], uv[i, 1], "+", color="lime", ms=6)
        state = {0: "fix", 1: "sacc", 2: "pursuit", 3: "blink", 4: "off"}.get(int(gs[i]), "?")
        ax.set_xlim(-0.5, man["width"] - 0.5)
        ax.set_ylim(man["height"] - 0.5, -0.5)
        ax.set_title(f"t={i / man['fps']:.2f}s {state}", fontsize=7)
        ax.axis("off")
        ax = fig.add_subplot(gs_[1, j])
        d = np.ma.masked_where(depth[j] <= 0, depth[j])
        im = ax.imshow(d, cmap="turbo", vmin=0, vmax=vmax)
        ax.axis("off")
    cax = fig.add_subplot(gs_[1, c])
    fig.colorbar(im, cax=cax).set_label("depth (m)", fontsize=7)
    cax.tick_params(labelsize=6)
    ax = fig.add_subplot(outer[1])
    for o in scene["objects"]:
        lo, hi = o["bbox_min"], o["bbox_max"]
        if o["kind"] in ("floor", "wall", "ceiling", "structure", "rug", "light"):
            if o["kind"] in ("wall", "structure"):
                ax.add_patch(Rectangle((lo[0], lo[2]), hi[0] - lo[0], hi[2] - lo[2], fill=False, color="k", lw=1.5))
            continue
        ax.add_patch(Rectangle((lo[0], lo[2]), hi[0] - lo[0], hi[2] - lo[2], color="0.75", alpha=0.7, lw=0))
    pos = T[:, :3, 3]
    planned = np.asarray(scene.get("walk", {}).get("path_xz", []))
    if len(planned):
        ax.plot(planned[:, 0], planned[:, 1], color="0.6", lw=0.8, ls="--", label="planned path")
    sc = ax.scatter(pos[:, 0], pos[:, 2], c=np.arange(n) / man["fps"], cmap="viridis", s=4, label="head")
    fwd = -T[:, :3, 2]  # OpenGL camera looks along -z
    step = max(1, n // 12)
    ax.quiver(pos[::step, 0], pos[::step, 2], fwd[::step, 0], fwd[::step, 2], color="C3", scale=12, width=0.006,
              label="view")
    ax.scatter(gp[gv, 0], gp[gv, 2], s=5, color="lime", edgecolors="k", linewidths=0.2, label="fixations")
    ax.set_aspect("equal")
    ax.set_title("top-down (x, z)", fontsize=8)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, loc="upper right")
    fig.colorbar(sc, ax=ax, fraction=0.04).set_label("time (s)", fontsize=7)
    fig.suptitle(f"{man['name']}  {man['width']}x{man['height']}  {n} frames @ {man['fps']} FPS  "
                 f"gaze valid {man.get('gaze_valid_fraction', float(gv.mean())):.0%}  "
                 f"scene: {man['scene'].get('kind')}", fontsize=9)
    out = seq_dir / "preview.png" if out_path is None else Path(out_path)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out
