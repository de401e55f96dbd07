"""Reading a render folder (the layout described in :mod:`egom2p.render.layout`): manifests, arrays, frames.

Below the writer (:mod:`.layout`) and the contact sheets (:mod:`.preview`), which both use it, as does
the ``egogen`` adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import EgoM2PError

FORMAT = "egom2p-egogen"
FORMAT_VERSION = 1


class RenderLayoutError(EgoM2PError, RuntimeError):
    """An output folder cannot take this render, or a render folder is malformed; names the path."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def read_manifest(seq_dir: Path) -> dict:
    p = Path(seq_dir) / "manifest.json"
    if not p.is_file():
        raise RenderLayoutError(seq_dir, "no manifest.json: the sequence is incomplete (still being written or interrupted)")
    try:
        man = json.loads(p.read_text())
    except ValueError as e:
        raise RenderLayoutError(p, f"manifest is not valid JSON ({e})") from e
    if man.get("format") != FORMAT:
        raise RenderLayoutError(p, f"not an {FORMAT} sequence (format {man.get('format')!r})")
    if int(man.get("format_version", -1)) > FORMAT_VERSION:
        raise RenderLayoutError(p, f"format version {man.get('format_version')} is newer than this reader ({FORMAT_VERSION})")
    return man


def load_array(path: Path, shape_prefix: tuple | None = None, mmap: bool = False) -> np.ndarray:
    """np.load without pickles; a clear error naming the file for missing/corrupt/mis-shaped arrays."""
    path = Path(path)
    if not path.is_file():
        raise RenderLayoutError(path, "file missing")
    try:
        a = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as e:
        raise RenderLayoutError(path, f"unreadable array ({type(e).__name__}: {e})") from e
    if shape_prefix is not None and tuple(a.shape[:len(shape_prefix)]) != tuple(shape_prefix):
        raise RenderLayoutError(path, f"shape {a.shape}, expected {shape_prefix} + ...")
    return a


def read_rgb(seq_dir: Path, manifest: dict, indices) -> np.ndarray:
    """uint8 [k, H, W, 3] frames of a sequence folder."""
    seq_dir = Path(seq_dir)
    idx = np.asarray(indices, dtype=np.int64)
    if manifest.get("rgb_format", "mp4") == "png":
        import cv2

        out = []
        for i in idx:
            p = seq_dir / "rgb" / f"{int(i):06d}.png"
            im = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if im is None:
                raise RenderLayoutError(p, "missing or unreadable PNG frame")
            out.append(im[..., ::-1])
        return np.stack(out) if out else np.zeros((0, manifest["height"], manifest["width"], 3), np.uint8)
    from ..video import VideoError, decode

    try:  # decord, or PyAV where decord cannot read the size (16, 24, 48 px wide)
        return decode(seq_dir / "rgb.mp4", idx)
    except VideoError as e:
        raise RenderLayoutError(seq_dir / "rgb.mp4", str(e)) from e
