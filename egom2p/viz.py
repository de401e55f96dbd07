"""Pictures of clips, tokens and predictions (matplotlib), used by the notebooks and reports.

Every function returns a matplotlib Figure and never calls ``plt.show()``; save with
``fig.savefig(path)`` or let a notebook display it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from .metrics import codebook_stats
from . import modality


def _plt():
    import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves

    return plt


def pick(n_total: int, n: int) -> np.ndarray:
    """``n`` evenly spaced indices in ``range(n_total)``."""
    return np.unique(np.linspace(0, n_total - 1, min(n, n_total)).round().astype(int))


def frame_strip(frames: np.ndarray, n: int = 8, title: str = "", fps: float = 30.0):
    """A row of ``n`` evenly spaced frames [T, H, W, 3] with their times."""
    plt = _plt()
    idx = pick(len(frames), n)
    fig, axes = plt.subplots(1, len(idx), figsize=(2 * len(idx), 2.3), squeeze=False)
    for ax, i in zip(axes[0], idx):
        ax.imshow(frames[i])
        ax.set_title(f"t={i / fps:.2f}s", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def depth_strip(depth: np.ndarray, n: int = 8, title: str = "", fps: float = 30.0, cmap: str = "turbo"):
    """A row of normalised inverse depth maps [T, H, W] (near = warm), invalid pixels gray."""
    plt = _plt()
    idx = pick(len(depth), n)
    fig, axes = plt.subplots(1, len(idx), figsize=(2 * len(idx), 2.5), squeeze=False)
    cm = plt.get_cmap(cmap).copy()
    cm.set_bad("0.5")
    im = None
    for ax, i in zip(axes[0], idx):
        im = ax.imshow(np.ma.masked_invalid(depth[i]), cmap=cm, vmin=0, vmax=1)
        ax.set_title(f"t={i / fps:.2f}s", fontsize=8)
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="inverse depth (norm.)")
    fig.suptitle(title, fontsize=10)
    return fig


def gaze_overlay(frames: np.ndarray, gaze: np.ndarray, n: int = 8, trail: int = 10, title: str = "",
                 pred: np.ndarray | None = None):
    """Frames with the gaze point (green) and its trail of the previous ``trail`` frames; ``pred`` in red."""
    plt = _plt()
    t_frames = len(frames)
    scale = len(gaze) / t_frames  # frames may be the 16 token frames of a 60-frame gaze track
    idx = pick(t_frames, n)
    h, w = frames.shape[1:3]
    fig, axes = plt.subplots(1, len(idx), figsize=(2 * len(idx), 2.3), squeeze=False)
    for ax, i in zip(axes[0], idx):
        g = int(round(i * scale))
        ax.imshow(frames[i])
        for track, color in ((gaze, "lime"), (pred, "red")):
            if track is None:
                continue
            seg = track[max(0, g - trail):g + 1]
            ax.plot(seg[:, 0] * w - 0.5, seg[:, 1] * h - 0.5, "-", color=color, lw=1, alpha=0.7)
            if np.all(np.isfinite(track[g])):
                ax.plot(track[g, 0] * w - 0.5, track[g, 1] * h - 0.5, "o", color=color, ms=6, mfc="none", mew=2)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.axis("off")
        ax.set_title(f"frame {g}" + ("" if np.all(np.isfinite(gaze[g])) else " (invalid)"), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def trajectory_3d(cams: dict[str, np.ndarray], title: str = "", every: int = 10, arrow: float = 0.1):
    """Camera centres of one or more trajectories {label: [T, 4, 4] camera-to-world} in 3D, with view arrows."""
    plt = _plt()
    fig = plt.figure(figsize=(5, 4.5))
    ax = fig.add_subplot(111, projection="3d")
    colors = ["tab:blue", "tab:red", "tab:green", "tab:orange", "tab:purple"]
    pts_all = []
    for (label, T), c in zip(cams.items(), colors):
        T = np.asarray(T, dtype=np.float64)
        p = T[:, :3, 3]
        pts_all.append(p)
        ax.plot(p[:, 0], p[:, 2], -p[:, 1], color=c, label=label)  # OpenCV y is down: plot -y as up
        ax.scatter(p[0, 0], p[0, 2], -p[0, 1], color=c, marker="o", s=20)
        for i in range(0, len(T), every):
            z = T[i, :3, 2] * arrow
            ax.quiver(p[i, 0], p[i, 2], -p[i, 1], z[0], z[2], -z[1], color=c, alpha=0.6)
    pts = np.concatenate(pts_all)
    centre, half = pts.mean(0), max(np.ptp(pts, axis=0).max() / 2, 0.05)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[2] - half, centre[2] + half)
    ax.set_zlim(-centre[1] - half, -centre[1] + half)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("z (m, forward)")
    ax.set_zlabel("up (m)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def sequence_plot(tracks: dict[str, np.ndarray], ylabel: str = "", title: str = "", fps: float = 30.0):
    """Per-frame curves {label: [T] or [T, k]} against time (gaze x/y, depth errors, losses, ...)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    for label, y in tracks.items():
        y = np.asarray(y, dtype=np.float64)
        t = np.arange(len(y)) / fps
        if y.ndim == 1:
            ax.plot(t, y, label=label)
        else:
            for k in range(y.shape[1]):
                ax.plot(t, y[:, k], label=f"{label}[{k}]")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def token_histograms(tokens: dict[str, np.ndarray], vocab: dict[str, int], title: str = ""):
    """Histogram of token ids per modality with codebook usage and perplexity in each title."""
    plt = _plt()
    mods = [m for m in tokens if tokens[m] is not None and tokens[m].size]
    fig, axes = plt.subplots(1, max(1, len(mods)), figsize=(4 * max(1, len(mods)), 3), squeeze=False)
    for ax, m in zip(axes[0], mods):
        counts = np.bincount(tokens[m].reshape(-1).astype(np.int64), minlength=vocab[m])
        st = codebook_stats(tokens[m], vocab[m])
        used, ppl = st["codes_used"], st["perplexity"]
        ax.bar(np.arange(len(counts)), counts, width=1.0, color="tab:blue")
        ax.set_title(f"{m}: {used}/{vocab[m]} codes used, perplexity {ppl:.1f}", fontsize=8)
        ax.set_xlabel("token id")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def coverage(tables: list[str | Path]):
    """Clips per dataset and modality over clips tables (paper Table 1 style) as a pandas DataFrame."""
    import pandas as pd

    from .clips import clips_index

    rows = []
    for t in tables:
        idx = clips_index(t).to_pylist()
        by_ds: dict[str, Counter] = {}
        for r in idx:
            c = by_ds.setdefault(r["dataset"], Counter())
            c["clips"] += 1
            for m in modality.names():
                c[m] += bool(r.get(f"has_{m}"))
        for ds, c in by_ds.items():
            rows.append({"dataset": ds, "clips": c["clips"], **{m: c[m] for m in modality.names()}})
    return pd.DataFrame(rows, columns=["dataset", "clips", *modality.names()]).set_index("dataset")


def quarantine(out_dir: str | Path):
    """Quarantined items of every ``*.quarantine.jsonl`` in a curation output folder, as a DataFrame."""
    import pandas as pd

    recs = []
    for f in sorted(Path(out_dir).glob("*.quarantine.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                recs.append(json.loads(line))
    cols = ["dataset", "sequence", "clip_id", "stage", "error_type", "reason", "source"]
    df = pd.DataFrame(recs)
    return df[[c for c in cols if c in df.columns]] if len(df) else pd.DataFrame(columns=cols)
