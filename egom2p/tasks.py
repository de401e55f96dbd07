"""The four EgoM2P tasks on user videos: camera tracking, gaze estimation, video depth, depth -> RGB.

A task turns an input video (or depth video) of any length into the standard-clip windows the model
was trained on, runs tokenize -> generate -> detokenize on each window and stitches the windows:

1. **Preprocess** (:func:`load_video`, :func:`load_depth`): decode, resample to the 30 FPS clip
   timeline by nearest timestamp, square centre crop and resize to the tokenizer's image side
   (256 for the base registry; the standard image), depth to inverse depth.
2. **Window** (:func:`window_starts`): 2-second windows (60 frames at 30 FPS) every ``stride``
   frames; when the video does not end on a window boundary a last window ending on the last frame
   is added, so every frame is covered. A video shorter than one window is refused.
3. **Tokenize, generate, detokenize** (:class:`TaskRunner`): the conditioning modality is encoded
   (video tokens from the 16 frames at 8 FPS the tokenizer picks), the target is generated with the
   task's official preset (:data:`TASKS`), then decoded.
4. **Stitch** (:func:`stitch_camera`, :func:`stitch_frames`, :func:`stitch_video`): per-frame
   outputs keep the earliest window covering a frame; camera windows (each relative to its own
   first frame) are chained through the first frame of the next window; depth windows (each
   normalised to [0, 1] on its own) are mapped to the scale of the previous ones by a least-squares
   scale and shift in inverse depth on the frames they share when they overlap.

Outputs: camera [N, 4, 4] camera-to-world (frame 0 = identity) at 30 FPS; gaze [N, 2] normalised
(x/W, y/H) at 30 FPS; depth [M, S, S] normalised inverse depth at the token frames (8 FPS); RGB
uint8 [M, S, S, 3] at the token frames. ``frame_index`` gives the 30 FPS frame of each output.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import geometry as geo
from .errors import EgoM2PError
from .modalities import CLIP_FPS, CLIP_FRAMES, VIDEO_TOKEN_FPS, Registry
from .standardize import clip_starts, normalize_inverse_depth, resize_masked
from .video import VideoError, center_crop_resize, decode, frame_timestamps, probe, token_frame_indices


class TaskInputError(EgoM2PError, ValueError):
    """Input a task cannot use; the message names the file and the problem."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    inputs: tuple[str, ...]  # conditioning modalities
    target: str  # generated modality
    preset: str  # generation preset (egom2p.generate)
    description: str
    # Default window stride (30 FPS frames): camera windows share one frame (59) to chain their
    # poses; depth windows share one token frame (56 = token frame 15 of the previous window) to
    # put them on one inverse-depth scale; gaze and RGB need no overlap.
    stride: int = CLIP_FRAMES


TASKS: dict[str, TaskSpec] = {
    "camera": TaskSpec("camera", ("rgb",), "cam", "camera", "camera trajectory from RGB video", CLIP_FRAMES - 1),
    "gaze": TaskSpec("gaze", ("rgb",), "gaze", "gaze", "eye-gaze dynamics from RGB video"),
    "depth": TaskSpec("depth", ("rgb",), "depth", "depth", "video depth from RGB video", 56),
    "rgb": TaskSpec("rgb", ("depth",), "rgb", "rgb_from_depth", "RGB video synthesis from a depth video"),
}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]


# --- preprocessing ------------------------------------------------------------------------------


@dataclass
class VideoInput:
    """A video on the 30 FPS clip timeline, as square standard images."""

    path: str
    frames: np.ndarray  # uint8 [N, S, S, 3] at 30 FPS
    times: np.ndarray  # [N] seconds from the first frame
    source_fps: float
    source_size: tuple[int, int]  # (width, height)


def _too_short(path: str, n: int) -> TaskInputError:
    return TaskInputError(
        f"{path}: video is {n} frames ({n / CLIP_FPS:.2f} s) on the {CLIP_FPS} FPS timeline; one window needs "
        f"{CLIP_FRAMES} frames ({CLIP_FRAMES / CLIP_FPS:.0f} s)")


def load_video(path, size: int) -> VideoInput:
    """Decode a video, resample it to 30 FPS by nearest timestamp, centre-crop and resize to ``size``."""
    path = os.fspath(path)
    try:
        info = probe(path)
        ts = frame_timestamps(path)
    except VideoError as e:
        raise TaskInputError(str(e)) from e
    if len(ts) != info.num_frames or not np.all(np.isfinite(ts)) or np.any(np.diff(ts) <= 0):
        ts = np.arange(info.num_frames) / max(info.fps, 1e-6)  # fall back to the nominal rate
    # 30 FPS frames whose time lies within half a target frame of the last source frame
    n30 = int(np.floor((ts[-1] - ts[0]) * CLIP_FPS + 0.5)) + 1
    if n30 < CLIP_FRAMES:
        raise _too_short(path, n30)
    times = np.arange(n30) / CLIP_FPS
    right = np.clip(np.searchsorted(ts - ts[0], times), 1, len(ts) - 1) if len(ts) > 1 else np.zeros(n30, int)
    left = np.maximum(right - 1, 0)
    rel = ts - ts[0]
    src = np.where(np.abs(rel[left] - times) <= np.abs(rel[right] - times), left, right)
    uniq, inverse = np.unique(src, return_inverse=True)
    try:
        frames = decode(path, uniq)
    except VideoError as e:
        raise TaskInputError(str(e)) from e
    frames = center_crop_resize(frames, size)[inverse]
    return VideoInput(path, np.ascontiguousarray(frames), times, info.fps, (info.width, info.height))


@dataclass
class DepthInput:
    """A depth video on the 30 FPS timeline as inverse depth, square standard images."""

    path: str
    inverse: np.ndarray  # float32 [N, S, S], inverse depth (1/m for metric input), NaN invalid
    metric: bool


def load_depth(path, size: int, fps: float = CLIP_FPS, kind: str = "metric") -> DepthInput:
    """Read a depth video from ``.npy`` (float [N, H, W]) or ``.npz`` (array ``depth``) at ``fps``.

    ``kind="metric"``: z-depth in metres, 0/NaN invalid. ``kind="inverse"``: inverse (relative)
    depth, larger = nearer, NaN invalid. Resampled to 30 FPS, centre-cropped and resized to ``size``
    ignoring invalid pixels.
    """
    path = os.fspath(path)
    if kind not in ("metric", "inverse"):
        raise ValueError(f"depth kind must be 'metric' or 'inverse', got {kind!r}")
    if not os.path.exists(path):
        raise TaskInputError(f"{path}: depth file not found")
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                if "depth" not in z:
                    raise TaskInputError(f"{path}: .npz has no array 'depth' (has {sorted(z.files)})")
                d = np.asarray(z["depth"])
        else:
            d = np.load(path, allow_pickle=False)
    except TaskInputError:
        raise
    except Exception as e:
        raise TaskInputError(f"{path}: cannot read depth ({type(e).__name__}: {str(e)[:200]}); expected a .npy "
                             f"float array [N, H, W] or an .npz with 'depth'") from e
    if d.ndim != 3 or not np.issubdtype(d.dtype, np.floating):
        raise TaskInputError(f"{path}: depth must be a float array [N, H, W], got {d.dtype} {d.shape}")
    n_src = d.shape[0]
    n30 = int(np.floor((n_src - 1) / fps * CLIP_FPS + 1e-6)) + 1
    if n30 < CLIP_FRAMES:
        raise _too_short(path, n30)
    src = np.clip(np.round(np.arange(n30) / CLIP_FPS * fps).astype(int), 0, n_src - 1)
    d = d[src].astype(np.float32)
    if kind == "metric":
        valid = np.isfinite(d) & (d > 0)
        inv = np.where(valid, 1.0 / np.where(valid, d, 1.0), 0.0).astype(np.float32)
    else:
        valid = np.isfinite(d)
        inv = np.where(valid, d, 0.0).astype(np.float32)
    if not valid.any():
        raise TaskInputError(f"{path}: depth has no valid pixel")
    small, ok = resize_masked(inv, valid, size)
    return DepthInput(path, np.where(ok, small, np.nan).astype(np.float32), kind == "metric")


def window_starts(num_frames: int, length: int = CLIP_FRAMES, stride: int = CLIP_FRAMES) -> list[int]:
    """Window starts covering all ``num_frames`` frames: every ``stride`` frames plus one ending on the last frame."""
    if num_frames < length:
        raise TaskInputError(f"{num_frames} frames is shorter than one window of {length} frames")
    starts = clip_starts(num_frames, length, stride)
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return starts


def depth_windows(depth: DepthInput, starts: list[int]) -> np.ndarray:
    """Per-window min-max normalised inverse depth [W, 60, S, S] (the standard clip's depth)."""
    out = []
    for s in starts:
        w = depth.inverse[s:s + CLIP_FRAMES]
        valid = np.isfinite(w)
        if not valid.any():
            raise TaskInputError(f"{depth.path}: window at frame {s} has no valid depth pixel")
        norm, _ = normalize_inverse_depth(np.where(valid, w, 0.0), valid)
        out.append(norm)
    return np.stack(out).astype(np.float32)


# --- stitching ----------------------------------------------------------------------------------


def stitch_camera(windows: np.ndarray, starts: list[int], num_frames: int) -> np.ndarray:
    """Per-window trajectories [W, 60, 4, 4] (each relative to its first frame) -> one trajectory [N, 4, 4].

    Window k's first frame must already be posed by an earlier window (windows overlap by at least
    one frame: the camera task's stride is 59), so its poses are chained:
    T(s_k + j) = T(s_k) @ W_k[0]^-1 @ W_k[j].
    """
    out = np.full((num_frames, 4, 4), np.nan)
    covered = 0
    for w, s in zip(np.asarray(windows, dtype=np.float64), starts):
        if s > 0 and s >= covered:
            raise ValueError(f"window at frame {s} shares no frame with the earlier windows (covered 0..{covered - 1}); "
                             f"camera windows must overlap (stride < {len(w)})")
        rel = geo.relative_to_first(w)
        base = np.eye(4) if s == 0 else out[s]
        glob = np.einsum("ij,njk->nik", base, rel)
        end = s + len(w)
        out[covered:end] = glob[covered - s:]
        covered = max(covered, end)
    if covered < num_frames:
        raise ValueError(f"windows cover {covered} of {num_frames} frames")
    return out


def stitch_frames(windows: np.ndarray, starts: list[int], num_frames: int) -> np.ndarray:
    """Per-frame window outputs [W, 60, ...] -> [N, ...], each frame from the earliest window covering it."""
    windows = np.asarray(windows)
    out = np.full((num_frames, *windows.shape[2:]), np.nan, dtype=np.float64)
    covered = 0
    for w, s in zip(windows, starts):
        end = s + len(w)
        if end > covered:
            out[covered:end] = w[covered - s:]
            covered = end
    return out


def stitch_video(windows: np.ndarray, starts: list[int], align_inverse_depth: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-window token-frame outputs [W, 16, ...] -> (frames [M, ...], 30 FPS frame index [M]).

    Token frame j of a window starting at s shows frame s + token_frame_indices()[j]. A frame shown
    by an earlier window is kept from it. With ``align_inverse_depth``, each later window is mapped
    by the least-squares scale and shift (inverse depth) that fits it to the frames it shares with
    the stitched result, so overlapping windows agree on one scale.
    """
    tidx = token_frame_indices()
    frames: dict[int, np.ndarray] = {}
    for w, s in zip(windows, starts):
        w = np.asarray(w)
        idx = s + tidx
        if align_inverse_depth and frames:
            shared = [j for j, f in enumerate(idx) if f in frames]
            if shared:
                a = np.stack([w[j] for j in shared]).astype(np.float64)
                b = np.stack([frames[int(idx[j])] for j in shared]).astype(np.float64)
                m = np.isfinite(a) & np.isfinite(b)
                if m.sum() >= 2 and np.ptp(a[m]) > 0:
                    A = np.stack([a[m], np.ones(m.sum())], 1)
                    (sc, sh), *_ = np.linalg.lstsq(A, b[m], rcond=None)
                    w = (sc * w + sh).astype(w.dtype)
        for j, f in enumerate(idx):
            frames.setdefault(int(f), w[j])
    order = sorted(frames)
    return np.stack([frames[f] for f in order]), np.asarray(order, dtype=np.int64)


# --- running the model --------------------------------------------------------------------------


def check_registries(model_registry: Registry, tokenizers: dict, ckpt: str = "", tokenizers_dir: str = "") -> None:
    """Refuse a checkpoint whose modality registry differs from the tokenizers' (clear message)."""
    for name, tok in tokenizers.items():
        if name not in model_registry.modalities:
            raise TaskInputError(f"tokenizer {name!r} in {tokenizers_dir or 'the tokenizers'} is not a modality of "
                                 f"the checkpoint {ckpt} (registry {model_registry.config!r}: {model_registry.names})")
        mine = model_registry[name]
        if tok.spec != mine:
            raise TaskInputError(
                f"modality registry mismatch: checkpoint {ckpt} (registry {model_registry.config!r}) has {name} = "
                f"{mine.token_grid} tokens, vocab {mine.vocab_size}, image {mine.image_size}; the {name} tokenizer "
                f"in {tokenizers_dir} has {tok.spec.token_grid} tokens, vocab {tok.spec.vocab_size}, image "
                f"{tok.spec.image_size}. Use tokenizers trained with the checkpoint's registry.")


@dataclass
class Timing:
    encode_s: float = 0.0
    generate_s: float = 0.0
    decode_s: float = 0.0
    windows: int = 0

    @property
    def total_s(self) -> float:
        return self.encode_s + self.generate_s + self.decode_s

    def as_dict(self) -> dict:
        return {"encode_s": self.encode_s, "generate_s": self.generate_s, "decode_s": self.decode_s,
                "total_s": self.total_s, "windows": self.windows}


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


@dataclass
class TaskRunner:
    """A model, its registry and the matching tokenizers; runs a task on batches of windows."""

    model: object
    registry: Registry
    tokenizers: dict
    device: str = "cpu"
    generation: dict = field(default_factory=dict)  # overrides of the preset (e.g. {"steps": 8})
    seed: int = 0

    @classmethod
    def load(cls, ckpt, tokenizers_dir, device: str = "cpu", allow_foreign_tokenizers: bool = False,
             **kw) -> "TaskRunner":
        """Load a verified checkpoint (egom2p.checkpoint) and tokenizers; refuse mismatched registries and
        tokenizers other than those the model was trained with (unless ``allow_foreign_tokenizers``)."""
        from .checkpoint import load_model
        from .integrity import check_tokenizer_identities
        from .tokenizers import load_tokenizers

        ckpt, tokenizers_dir = os.fspath(ckpt), os.fspath(tokenizers_dir)
        if not os.path.exists(ckpt):
            raise TaskInputError(f"{ckpt}: checkpoint not found")
        if not os.path.isdir(tokenizers_dir):
            raise TaskInputError(f"{tokenizers_dir}: tokenizers directory not found")
        model, registry, info = load_model(ckpt, device=device)
        toks = load_tokenizers(tokenizers_dir, device=device)
        check_registries(registry, toks, ckpt, tokenizers_dir)
        check_tokenizer_identities((info.get("db") or {}).get("tokenizers") or {},
                                   {m: t.identity for m, t in toks.items()}, recorded_in=f"checkpoint {info['path']}",
                                   actual_in=tokenizers_dir, allow=allow_foreign_tokenizers)
        return cls(model=model, registry=registry, tokenizers=toks, device=device, **kw)

    def image_size(self) -> int:
        return int(self.registry["rgb"].image_size)

    def _tokenizer(self, modality: str):
        if modality not in self.tokenizers:
            raise TaskInputError(f"no {modality} tokenizer loaded (have {sorted(self.tokenizers)})")
        return self.tokenizers[modality]

    def config(self, task: TaskSpec):
        """The task's official preset (a name egom2p.generate resolves), with ``generation`` overrides applied."""
        if not self.generation:
            return task.preset
        from dataclasses import replace

        from . import generate as G

        return replace(G.get_preset(task.preset), **self.generation)

    def run(self, task: TaskSpec | str, inputs: dict[str, np.ndarray], batch_size: int = 8,
            timing: Timing | None = None, progress: bool = False) -> np.ndarray:
        """Windows of standard-clip inputs {modality: [W, 60, ...]} -> decoded target for each window.

        Returns the tokenizer's decode output: cam [W, 60, 4, 4]; gaze [W, 60, 2]; depth
        [W, 16, S, S]; rgb uint8 [W, 16, S, S, 3].
        """
        import torch

        from .generate import generate

        task = get_task(task) if isinstance(task, str) else task
        missing = [m for m in task.inputs if m not in inputs]
        if missing:
            raise TaskInputError(f"task {task.name} needs {missing}")
        n = len(next(iter(inputs.values())))
        cfg = self.config(task)
        gen = torch.Generator(device=self.device).manual_seed(self.seed)
        timing = timing if timing is not None else Timing()
        outs = []
        rng = range(0, n, batch_size)
        if progress:
            from tqdm import tqdm

            rng = tqdm(rng, desc=f"{task.name} windows", unit="batch")
        for i in rng:
            t0 = time.perf_counter()
            cond = {}
            for m in task.inputs:
                tok = self._tokenizer(m).encode(inputs[m][i:i + batch_size])
                cond[m] = torch.as_tensor(np.asarray(tok), dtype=torch.long, device=self.device)
            _sync(self.device)
            t1 = time.perf_counter()
            with torch.no_grad():
                out = generate(self.model, cond, [task.target], cfg, generator=gen)
            _sync(self.device)
            t2 = time.perf_counter()
            tokens = out[task.target]
            spec = self.registry[task.target]
            if tokens.min() < 0 or tokens.max() >= spec.vocab_size:
                raise RuntimeError(f"generated {task.target} tokens outside [0, {spec.vocab_size})")
            dec = self._tokenizer(task.target).decode(tokens.detach().cpu())
            dec = dec.detach().cpu().numpy() if hasattr(dec, "detach") else np.asarray(dec)
            outs.append(dec)
            t3 = time.perf_counter()
            timing.encode_s += t1 - t0
            timing.generate_s += t2 - t1
            timing.decode_s += t3 - t2
        timing.windows += n
        return np.concatenate(outs, 0)


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


def run_task(runner: TaskRunner, task: str, video=None, depth=None, depth_fps: float = CLIP_FPS,
             depth_kind: str = "metric", stride: int | None = None, batch_size: int = 8,
             progress: bool = True) -> TaskResult:
    """A task on a whole video file (any length >= 2 s): preprocess, window, run, stitch."""
    spec = get_task(task)
    size = runner.image_size()
    vin = din = None
    if "rgb" in spec.inputs:
        if video is None:
            raise TaskInputError(f"task {task} needs --video")
        vin = load_video(video, size)
        n = len(vin.frames)
    else:
        if depth is None:
            raise TaskInputError(f"task {task} needs --depth (a .npy/.npz depth video)")
        din = load_depth(depth, size, fps=depth_fps, kind=depth_kind)
        n = len(din.inverse)
        if video is not None:
            vin = load_video(video, size)
    starts = window_starts(n, CLIP_FRAMES, stride or spec.stride)
    if spec.inputs == ("rgb",):
        inputs = {"rgb": np.stack([vin.frames[s:s + CLIP_FRAMES] for s in starts])}
    else:
        inputs = {"depth": depth_windows(din, starts)}
    timing = Timing()
    out = runner.run(spec, inputs, batch_size=batch_size, timing=timing, progress=progress)
    if spec.target == "cam":
        pred = stitch_camera(out, starts, n)
        idx = np.arange(n)
    elif spec.target == "gaze":
        pred = stitch_frames(out, starts, n).astype(np.float32)
        idx = np.arange(n)
    else:
        pred, idx = stitch_video(out, starts, align_inverse_depth=spec.target == "depth")
    return TaskResult(task, pred, idx, idx / CLIP_FPS, starts, timing, vin, din)


# --- outputs in common formats ------------------------------------------------------------------


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
    rows = np.loadtxt(path, comments="#", ndmin=2)
    if rows.shape[1] != 8:
        raise TaskInputError(f"{path}: TUM lines need 8 numbers, got {rows.shape[1]}")
    T = geo.make_se3(geo.quat_to_matrix(rows[:, 4:8], order="xyzw"), rows[:, 1:4])
    return rows[:, 0], T


def plot_trajectory(path, poses: np.ndarray, reference: np.ndarray | None = None, title: str = "") -> None:
    """PNG: top view (x-z, OpenCV: z forward), side view (z vs -y) and per-axis translation over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = np.asarray(poses)[:, :3, 3]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4.2))
    ax[0].plot(p[:, 0], p[:, 2], "-", label="predicted")
    ax[0].plot(p[:1, 0], p[:1, 2], "o", color="k", label="start")
    ax[1].plot(p[:, 2], -p[:, 1], "-")
    if reference is not None:
        r = np.asarray(reference)[:, :3, 3]
        ax[0].plot(r[:, 0], r[:, 2], "--", label="reference")
        ax[1].plot(r[:, 2], -r[:, 1], "--")
    ax[0].set(xlabel="x (m)", ylabel="z forward (m)", title="top view")
    ax[0].axis("equal")
    ax[0].legend()
    ax[1].set(xlabel="z forward (m)", ylabel="up = -y (m)", title="side view")
    ax[1].axis("equal")
    for k, name in enumerate("xyz"):
        ax[2].plot(np.arange(len(p)) / CLIP_FPS, p[:, k], label=name)
    ax[2].set(xlabel="time (s)", ylabel="translation (m)", title="translation")
    ax[2].legend()
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


def write_outputs(result: TaskResult, out_dir, runner_size: int | None = None) -> dict[str, str]:
    """Write a task's result in common formats; returns {kind: path}."""
    from .video import encode_h264

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    if result.task == "camera":
        paths["tum"] = str(out / "trajectory.tum.txt")
        write_tum(paths["tum"], result.times, result.prediction)
        paths["plot"] = str(out / "trajectory.png")
        plot_trajectory(paths["plot"], result.prediction, title=f"camera trajectory: {Path(result.video.path).name}")
    elif result.task == "gaze":
        size = result.video.frames.shape[1]
        paths["csv"] = str(out / "gaze.csv")
        write_gaze_csv(paths["csv"], result.times, result.prediction, size)
        paths["overlay"] = str(out / "gaze_overlay.mp4")
        encode_h264(_even(gaze_overlay(result.video.frames, result.prediction)), fps=CLIP_FPS, path=paths["overlay"])
    elif result.task == "depth":
        paths["npy"] = str(out / "depth.npy")
        np.save(paths["npy"], result.prediction.astype(np.float32))
        paths["frames"] = str(out / "depth_frames.csv")
        _write_index(paths["frames"], result.frame_index)
        paths["video"] = str(out / "depth.mp4")
        encode_h264(_even(colorize_depth(result.prediction)), fps=VIDEO_TOKEN_FPS, path=paths["video"])
    elif result.task == "rgb":
        paths["video"] = str(out / "rgb.mp4")
        encode_h264(_even(np.asarray(result.prediction, dtype=np.uint8)), fps=VIDEO_TOKEN_FPS, path=paths["video"])
        paths["frames"] = str(out / "rgb_frames.csv")
        _write_index(paths["frames"], result.frame_index)
    return paths


def _write_index(path, frame_index: np.ndarray) -> None:
    with open(path, "w") as f:
        f.write("output_frame,frame_30fps,time_s\n")
        for i, fi in enumerate(frame_index):
            f.write(f"{i},{int(fi)},{fi / CLIP_FPS:.6f}\n")
