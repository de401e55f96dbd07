"""Synthetic token databases for the training, sampler and generation tests (and benchmarks).

Tokens are deterministic functions of a per-clip latent, and of each other across modalities, so a
model can learn them and its loss falls clearly:

* gaze[i]  = (4 * scene + offset + i) % V_seq
* cam[i]   = (5 * gaze[i] + 7) % V_seq            (a per-position function of gaze)
* rgb[j]   = (37 * scene + 3 * j + offset) % V_vid
* depth[j] = (7 * rgb[j] + 11) % V_vid            (a per-position function of rgb)
"""

from __future__ import annotations

import numpy as np

from egom2p.modalities import get_registry
from egom2p.tokendb import write_tokens


def cam_from_gaze(gaze: np.ndarray, vocab: int) -> np.ndarray:
    return (5 * np.asarray(gaze) + 7) % vocab


def structured_rows(n: int, dataset: str, registry, seed: int = 0, modalities=("rgb", "depth", "gaze", "cam"),
                    split: str = "train", scenes: int = 16, offsets: int | None = None) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    vs, vv = registry["gaze"].vocab_size, registry["rgb"].vocab_size
    ns, nv = registry["gaze"].num_tokens, registry["rgb"].num_tokens
    for k in range(n):
        scene, offset = int(rng.integers(scenes)), int(rng.integers(offsets or ns))
        gaze = (4 * scene + offset + np.arange(ns)) % vs
        rgb = (37 * scene + 3 * np.arange(nv) + offset) % vv
        toks = {"gaze": gaze, "cam": cam_from_gaze(gaze, vs), "rgb": rgb, "depth": (7 * rgb + 11) % vv}
        row = {"clip_id": f"{dataset}/s{seed}/{k:06d}", "dataset": dataset, "sequence": f"s{seed}", "split": split}
        for m in modalities:
            row[f"tok_{m}"] = toks[m]
        rows.append(row)
    return rows


def make_token_db(path, registry="tiny", parts=(("egogen", 24, ("rgb", "depth", "gaze", "cam")),
                                                 ("hot3d", 8, ("rgb", "cam"))), seed: int = 0, **kw) -> str:
    """A token DB at ``path`` with one dataset per ``(name, clips, modalities)``; returns the path."""
    reg = get_registry(registry) if isinstance(registry, str) else registry
    rows = []
    for i, (name, n, mods) in enumerate(parts):
        rows += structured_rows(n, name, reg, seed=seed * 100 + i, modalities=mods, **kw)
    write_tokens(str(path), rows, registry=reg, tokenizers={m: {"kind": "synthetic", "sha256": "0" * 64}
                                                            for m in ("rgb", "depth", "gaze", "cam")})
    return str(path)
