"""Pictures of RollingDepth results: depth videos side by side, per-snippet scales and weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .coalign import CoalignResult


def save_depth_figure(path, videos: dict[str, np.ndarray], frames: list[int] | None = None,
                      result: CoalignResult | None = None, title: str = "") -> Path:
    """PNG: one row per named depth video [N, H, W] at the given frames (each row min-max scaled),
    plus, when ``result`` is given, the solved per-snippet scales and robust weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(videos)
    n = len(next(iter(videos.values())))
    frames = frames if frames is not None else sorted({0, n // 2, n - 1})
    rows = len(names) + (1 if result is not None else 0)
    fig, axes = plt.subplots(rows, len(frames), figsize=(2.4 * len(frames), 2.0 * rows), squeeze=False)
    for r, name in enumerate(names):
        v = np.asarray(videos[name], dtype=np.float32)
        lo, hi = np.nanpercentile(v, 1), np.nanpercentile(v, 99)
        for c, f in enumerate(frames):
            ax = axes[r][c]
            ax.imshow(v[f], cmap="Spectral_r", vmin=lo, vmax=hi)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title(f"frame {f}", fontsize=8)
    if result is not None:
        for ax in axes[-1]:
            ax.remove()
        ax = fig.add_subplot(rows, 1, rows)
        idx = np.arange(len(result.scales))
        ax.plot(idx, result.scales / np.median(result.scales), ".", ms=3, label="scale / median")
        ax.plot(idx, result.snippet_weights, ".", ms=3, label="robust weight")
        ax.set_xlabel("snippet", fontsize=8)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
