"""What one modality is, in one place: :class:`ModalityInfo`, and the table of them (:data:`MODALITY_INFO`).

The size half of the registry (token grid, vocabulary, frames) is :mod:`egom2p.modalities`; this is the
behaviour half, keyed by the same names (ml-4m's ``MODALITY_INFO`` is the model): how the modality lives
in a standard clip (array shape, dtype, validation), in a clips table (columns and codec), how a raw
sequence becomes it (standardize), when a clip counts as having it, how its tokenizer sees it (prepare,
postprocess, normalisation statistics) and which generation preset makes it. Curation, the clips table,
tokenization, the token DB, the sampler, training and generation iterate over these entries and never
branch on a modality's name.

A new modality is one :class:`ModalityInfo` plus its size specs, registered with :func:`register`
(permanently: list its module in :data:`egom2p.modality.BUILTIN`; for one process: :func:`registered`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..modalities import CLIP_FRAMES, REGISTRIES, ModalitySpec


class ModalityError(ValueError):
    """A modality's array breaks its rule; the caller adds the clip or file to the message."""


def _no_check(array, clip) -> str | None:
    return None


def _always(array) -> bool:
    return True


def mean_samples(x: np.ndarray) -> np.ndarray:
    """Element-wise mean over the first axis, in the samples' dtype (integers rounded and kept in range)."""
    x = np.asarray(x)
    m = x.mean(0, dtype=np.float64)
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        return np.clip(np.rint(m), info.min, info.max).astype(x.dtype)
    return m.astype(x.dtype)


@dataclass(frozen=True)
class ModalityInfo:
    """One modality's behaviour. Functions take and return numpy arrays; none imports the clip or table code.

    * ``frame_shape(height, width)``: the per-frame shape of the standard-clip array (its dtype ``dtype``);
      the array is [60, *frame_shape], None when the clip lacks the modality (never zeros).
    * ``check(array, clip)``: the rule beyond shape and dtype (invalid marking, ranges): a problem or None.
    * ``columns``: its clips-table columns, the first the payload (null = absent); ``encode(clip)`` ->
      {column: value}; ``decode(row, n, h, w)`` -> {clip field: value} (the modality's array under its name).
    * ``standardize(seq, frames, size, depth)``: a raw sequence's window (``frames``: 30 FPS indices) ->
      {clip field: value}, {} when the sequence lacks it; raises :class:`ModalityError`.
    * ``present(array)``: whether a clip's array counts as having the modality (tokenized, sampled).
    * ``tokenizer``: "video" (the causal FSQ / Cosmos family) or "sequence" (the VQ-VAE);
      ``prepare(x, norm)`` -> (tokenizer input float32 [B, frames, channels], valid [B, frames]) and
      ``postprocess(y, norm)`` -> standard arrays (sequences; video preprocessing is shared);
      ``norm_stats(x)`` -> the normalisation statistics a checkpoint stores (None: not normalised);
      ``mirror(x)`` / ``reverse(x)`` -> the clips mirrored left-right / reversed in time, for augmentation
      (``mirror`` None: not augmented; ``reverse`` None: plain time reversal).
    * ``plot(ax, truth, reconstruction)``: one clip's truth against a reconstruction on a matplotlib axis
      (None: :func:`plot_channels`, every feature over the frames).
    * ``preset``: the default generation preset (:data:`egom2p.generate.PRESETS`) that makes it.
    * ``average(samples)``: K decoded samples [K, ...] -> their mean [...] in the modality's own geometry
      (the point estimate of ``egom2p eval --samples K`` and ``predict --samples K``); default :func:`mean_samples`.
    """

    name: str
    tokenizer: str
    frame_shape: Callable[[int, int], tuple[int, ...]]
    dtype: Any
    columns: tuple[pa.Field, ...]
    encode: Callable[[Any], dict]
    decode: Callable[[dict, int, int, int], dict]
    standardize: Callable[..., dict]
    check: Callable[[np.ndarray, Any], str | None] = _no_check
    present: Callable[[np.ndarray], bool] = _always
    prepare: Callable[[np.ndarray, dict | None], tuple[np.ndarray, np.ndarray]] | None = None
    postprocess: Callable[[np.ndarray, dict | None], np.ndarray] | None = None
    norm_stats: Callable[[np.ndarray], dict | None] | None = None
    mirror: Callable[[np.ndarray], np.ndarray] | None = None
    reverse: Callable[[np.ndarray], np.ndarray] | None = None
    plot: Callable[[Any, np.ndarray, np.ndarray], None] | None = None
    average: Callable[[np.ndarray], np.ndarray] = mean_samples
    preset: str = "gaze"  # the paper's preset of a 30-token sequence target (5 steps) unless the entry names another
    fields: tuple[str, ...] = field(default=())  # clip fields besides the array that it owns (depth_range, ...)

    @property
    def payload_column(self) -> str:
        return self.columns[0].name

    def shape(self, n: int, height: int, width: int) -> tuple[int, ...]:
        return (n, *self.frame_shape(height, width))

    def validate(self, array: np.ndarray, clip) -> str | None:
        """Shape, dtype, then the modality's own rule: a problem, or None."""
        want = self.shape(clip.num_frames, clip.height, clip.width)
        if array.dtype != np.dtype(self.dtype) or array.shape != want:
            dims = ",".join(str(d) for d in want)
            return f"{self.name} must be {np.dtype(self.dtype)} [{dims}], got {array.dtype} {array.shape}"
        return self.check(array, clip)


#: name -> entry, in registry order (the model's modality order).
MODALITY_INFO: dict[str, ModalityInfo] = {}


def register(info: ModalityInfo, specs: dict[str, ModalitySpec]) -> None:
    """Add a modality: its behaviour here and its size spec to every registry configuration (``specs``
    names each of :data:`egom2p.modalities.REGISTRIES`)."""
    if info.name in MODALITY_INFO:
        raise ValueError(f"modality {info.name!r} is already registered")
    if info.tokenizer not in ("video", "sequence"):
        raise ValueError(f"modality {info.name!r}: tokenizer must be 'video' or 'sequence', got {info.tokenizer!r}")
    missing = sorted(set(REGISTRIES) - set(specs))
    if missing:
        raise ValueError(f"modality {info.name!r}: no size spec for registry configuration(s) {missing}")
    MODALITY_INFO[info.name] = info
    for config, reg in REGISTRIES.items():
        reg.modalities[info.name] = specs[config]


def unregister(name: str) -> None:
    """Remove a modality registered with :func:`register` (tests; a process that registered one for a run)."""
    MODALITY_INFO.pop(name, None)
    for reg in REGISTRIES.values():
        reg.modalities.pop(name, None)


@contextlib.contextmanager
def registered(info: ModalityInfo, specs: dict[str, ModalitySpec]) -> Iterator[ModalityInfo]:
    """:func:`register` for the duration of a ``with`` block."""
    register(info, specs)
    try:
        yield info
    finally:
        unregister(info.name)


def info(name: str) -> ModalityInfo:
    if name not in MODALITY_INFO:
        raise KeyError(f"unknown modality {name!r}; known: {list(MODALITY_INFO)}")
    return MODALITY_INFO[name]


def names(tokenizer: str | None = None) -> tuple[str, ...]:
    """The registered modalities in registry order (only those of one tokenizer family when given)."""
    return tuple(n for n, i in MODALITY_INFO.items() if tokenizer is None or i.tokenizer == tokenizer)


# --- building blocks of sequence modalities: float32 [60, *frame] arrays stored as fixed-size float lists ---


def float_sequence_column(name: str, frame_shape: tuple[int, ...]) -> pa.Field:
    return pa.field(name, pa.list_(pa.float32(), CLIP_FRAMES * int(np.prod(frame_shape))))


def float_sequence_codec(name: str, frame_shape: tuple[int, ...]):
    """(encode, decode) of a float32 [n, *frame_shape] array as one fixed-size float list column (bit-exact)."""

    def encode(clip) -> dict:
        v = clip.get(name)
        return {name: None if v is None else v.reshape(-1).tolist()}

    def decode(row: dict, n: int, h: int, w: int) -> dict:
        v = row.get(name)
        return {name: None if v is None else np.asarray(v, dtype=np.float32).reshape(n, *frame_shape)}

    return encode, decode


def standardize_signal(name: str):
    """Standardize for a per-frame signal an adapter hands over in ``RawSequence.signals[name]`` (float [N, ...]):
    the window's rows as float32, non-finite rows refused (a signal has no invalid marking of its own)."""

    def standardize(seq, frames: np.ndarray, size: int, depth=None) -> dict:
        sig = (getattr(seq, "signals", None) or {}).get(name)
        if sig is None:
            return {}
        v = np.asarray(sig[frames], dtype=np.float32)
        bad = ~np.isfinite(v.reshape(len(v), -1)).all(-1)
        if bad.any():
            raise ModalityError(f"non-finite {name} at frames {frames[bad][:5].tolist()}")
        return {name: v}

    return standardize


def finite_rows(x: np.ndarray) -> np.ndarray:
    """[B, T, ...] -> bool [B, T]: rows whose every value is finite."""
    x = np.asarray(x)
    return np.isfinite(x.reshape(*x.shape[:2], -1)).all(-1)


def standard_norm_stats(x: np.ndarray) -> dict:
    """Per-channel mean / std over every valid frame of training clips [N, 60, C] (std floored at 1e-3)."""
    x = np.asarray(x, dtype=np.float64)
    v = x.reshape(-1, x.shape[-1])[finite_rows(x).reshape(-1)]
    return {"mean": v.mean(0).astype(np.float32).tolist(), "std": np.maximum(v.std(0), 1e-3).astype(np.float32).tolist()}


def standard_prepare(channels: int):
    """prepare of a plain [B, 60, C] signal: normalised by the checkpoint's mean / std, invalid rows zeroed."""

    def prepare(x, norm: dict | None) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[-1] != channels:
            raise ModalityError(f"needs float32 [B,T,{channels}], got {x.shape}")
        valid = finite_rows(x)
        if norm is not None:
            x = (x - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)
        return np.where(valid[..., None], x, 0.0).astype(np.float32), valid

    return prepare


def standard_postprocess(y, norm: dict | None) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    if norm is not None:
        y = y * np.asarray(norm["std"], np.float32) + np.asarray(norm["mean"], np.float32)
    return y.astype(np.float32)


def plot_channels(ax, truth: np.ndarray, rec: np.ndarray, max_channels: int = 6) -> None:
    """One clip of a sequence modality: each feature (up to ``max_channels``) over the frames, truth solid."""
    t, r = np.asarray(truth).reshape(len(truth), -1), np.asarray(rec).reshape(len(rec), -1)
    for c in range(min(max_channels, t.shape[1])):
        line, = ax.plot(t[:, c], "-", label=f"{c} truth")
        ax.plot(r[:, c], "--", color=line.get_color(), label=f"{c} recon")
    ax.set_xlabel("frame")
