"""Training loops for the tokenizers, with the evaluation printed at the end of ``egom2p tokenizer train``.

* :func:`train_sequence` - gaze or cam Transformer VQ-VAE on clips tables;
* :func:`train_video` - the project's causal FSQ video tokenizer on RGB and depth of clips tables
  (one network for both, like Cosmos in the paper); written to ``OUT/rgb`` and ``OUT/depth``.

Evaluation (:func:`evaluate_sequence`, :func:`evaluate_video`) on the held-out clips, scored by the
same code as the "tokenizer round trip" (ceiling) row of ``egom2p eval`` (:mod:`egom2p.evaluation`,
:mod:`egom2p.metrics`): camera ATE / RTE (m, RMSE) and RRE (deg, RMSE at Delta = 1) after the default
Sim(3) alignment; gaze MSE of normalised (x, y) over valid frames; RGB PSNR (dB) and SSIM of the
token frames; depth PSNR/SSIM of normalised inverse depth and AbsRel/delta<1.25 where the clips are
metric; codebook usage (fraction of codes used) and perplexity (exp of the code entropy). Pictures
of reconstructions are written beside the checkpoint (``eval.png``).
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from .. import modality as registry_info
from ..modalities import Registry, get_registry
from ..modality.cam import norm_stats as cam_norm_stats  # noqa: F401  (its home is the cam entry)
from ..schedule import lr_at
from ..video import token_frame_indices
from . import SequenceTokenizer, TokenizerError, VideoTokenizer, prepare_video, save_tokenizer
from .fsq import FSQ_PRESETS, CausalVideoFSQ, FSQVideoConfig
from .vqvae import VQVAE_PRESETS, SequenceVQVAE, VQVAEConfig


@dataclass
class TrainConfig:
    """Options of ``egom2p tokenizer train``: a typed config (egom2p.config.tokenizer_config composes it
    from KEY=VALUE overrides with Hydra; model fields as model.FIELD=VALUE, typed by the model's config)."""

    registry: str = "tiny"  # modality registry config: vocab sizes and token grids
    size: str = "tiny"  # model preset: tiny (CPU) or base (paper: dim 768, 12 blocks)
    steps: int = 300
    batch_size: int = 16
    lr: float | None = None  # default: tiny 1e-3 (VQ-VAE) / 3e-3 (video), base 2e-4
    weight_decay: float = 0.0
    warmup: int = 20
    seed: int = 0
    device: str = "auto"
    threads: int = 1  # CPU threads of torch (more threads than free cores slows training down badly)
    eval_fraction: float = 0.1  # held out when the clips have no val/test split
    max_clips: int | None = None
    log_every: int = 25
    augment: bool = False  # gaze/cam: also train on mirrored and time-reversed copies of the clips (4x)
    model: dict = field(default_factory=dict)  # model config overrides


def _device(name: str, threads: int | None = None) -> torch.device:
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    if dev.type == "cpu" and threads:
        torch.set_num_threads(int(threads))
    return dev


def _keeps_torch_threads(fn):
    """``fn`` sets torch's CPU thread count for training (``threads``); put the caller's back afterwards, so
    what runs next in this process (the demo trains EgoM2P right after its tokenizers) keeps its own."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


def _optimizer_step(opt, model, loss, lr: float) -> None:
    """One AdamW step at learning rate ``lr`` with gradient clipping at norm 1."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def _lr_at(step: int, cfg: TrainConfig, base_lr: float) -> float:
    """:func:`egom2p.schedule.lr_at` over optimizer steps, decaying to 0: the warm-up counts the step being
    taken (``step + 1``, so the first step already moves), the decay the steps done."""
    return lr_at(step + 1 if step < cfg.warmup else step, cfg.steps, base_lr, 0.0, cfg.warmup)


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, mininterval=2.0, dynamic_ncols=True)


# --- data ------------------------------------------------------------------------------------------


@dataclass
class SequenceData:
    ids: list[str]
    splits: list[str]
    x: np.ndarray  # gaze [N, 60, 2] or cam [N, 60, 4, 4]


def load_sequence_data(paths, modality: str, max_clips: int | None = None) -> SequenceData:
    """All clips with ``modality`` from clips tables (no video decoded)."""
    from ..clips import read_clips

    ids, splits, xs = [], [], []
    info = registry_info.info(modality)
    for p in paths:
        for c in read_clips(p, skip=[m for m in registry_info.names() if m != modality]):
            v = c.get(modality)
            if v is None or not info.present(v):
                continue  # e.g. a clip with no valid gaze frame teaches nothing
            ids.append(c.clip_id)
            splits.append(c.split)
            xs.append(v)
            if max_clips and len(ids) >= max_clips:
                break
    if not ids:
        raise TokenizerError(f"no clip with {modality} in {[str(p) for p in paths]}")
    return SequenceData(ids, splits, np.stack(xs).astype(np.float32))


def split_eval(splits: list[str], fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(train indices, eval indices, description): val/test clips when present, else a held-out fraction."""
    s = np.asarray(splits)
    if fraction <= 0:
        idx = np.arange(len(splits))
        return idx, idx, f"the {len(splits)} training clips (eval_fraction=0)"
    held = np.nonzero(s != "train")[0]
    if held.size and held.size < s.size:
        return np.nonzero(s == "train")[0], held, f"{held.size} val/test clips"
    n = len(splits)
    if n < 5:
        idx = np.arange(n)
        return idx, idx, f"the {n} training clips (too few to hold out)"
    perm = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(n * fraction)))
    return np.sort(perm[k:]), np.sort(perm[:k]), f"{k} held-out clips"


def augment_sequences(modality: str, x: np.ndarray) -> np.ndarray:
    """Training clips [N, 60, ...] -> [4N, ...]: as given, mirrored left-right, reversed in time, and both.

    All four are clips the same world could produce; the modality's registry entry says how it mirrors
    (gaze: x -> 1 - x; a camera trajectory through its first frame's y-z plane, S T S with
    S = diag(-1, 1, 1, 1), rotations and gravity kept) and reverses (a camera trajectory is re-expressed
    relative to its new first frame). A modality without a mirror is not augmented.
    """
    info = registry_info.info(modality)
    x = np.asarray(x)
    if info.mirror is None:
        return x
    both = np.concatenate([x, info.mirror(x)])
    rev = info.reverse(both) if info.reverse is not None else both[:, ::-1]
    return np.ascontiguousarray(np.concatenate([both, rev]).astype(x.dtype))


# --- evaluation ------------------------------------------------------------------------------------
# One metrics library: the round trip is scored by egom2p.evaluation.score_reconstructions, the same
# code (the task table's ground truth and metrics, egom2p.metrics) as the "tokenizer round trip"
# (ceiling) row of `egom2p eval`; codebook statistics by egom2p.metrics.codebook_stats.


def evaluate_sequence(tok: SequenceTokenizer, x: np.ndarray, batch_size: int = 64) -> tuple[dict, np.ndarray]:
    """Reconstruction metrics of a gaze / cam tokenizer on clips ``x``; returns (metrics, reconstruction).

    cam: ATE / RTE (m) and RRE (deg) after the evaluation's default alignment (Sim(3)), mean over
    clips; gaze: MSE of normalised (x, y) over valid frames, mean over clips; codebook usage and
    perplexity of the tokens.
    """
    from ..evaluation import score_reconstructions
    from ..metrics import codebook_stats

    toks, recs = [], []
    for i in range(0, len(x), batch_size):
        t = tok.encode(x[i:i + batch_size])
        toks.append(t)
        recs.append(tok.decode(t))
    toks, rec = np.concatenate(toks), np.concatenate(recs)
    m = codebook_stats(toks, tok.spec.vocab_size)
    m.update(score_reconstructions(tok.modality, x, rec))
    m["clips"] = int(len(x))
    return m, rec


def evaluate_video(tok: VideoTokenizer, x: np.ndarray, batch_size: int = 4, meta: list | None = None
                   ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics of a video tokenizer on standard clip videos; returns (metrics, reference, reconstruction).

    The clips are brought to the tokenizer's image size as ``egom2p eval`` does
    (:func:`egom2p.tasks.model_input`); PSNR (dB) and SSIM of the 16 token frames (rgb: as the rgb task
    scores them; depth: of the normalised inverse depth, data range 1), the metrics of the task that
    generates the modality where its ground truth exists (depth: AbsRel and delta<1.25 for clips with
    a metric range, ``meta``: objects with the clip's ``depth_range`` / ``depth_raw_valid``), codebook
    usage and perplexity.
    """
    from ..evaluation import score_reconstructions
    from ..metrics import codebook_stats, psnr, ssim
    from ..tasks.inputs import model_input

    S = tok.spec.image_size
    x_in = np.stack([model_input(v, tok.modality, S) for v in x])
    toks, refs, recs = [], [], []
    for i in range(0, len(x_in), batch_size):
        xb = x_in[i:i + batch_size]
        t = tok.encode(xb)
        toks.append(t)
        recs.append(tok.decode(t))
        refs.append(xb[:, token_frame_indices()])
    toks, ref, rec = np.concatenate(toks), np.concatenate(refs), np.concatenate(recs)
    m = codebook_stats(toks, tok.spec.vocab_size)
    filled = np.nan_to_num(ref, nan=0.0) if ref.dtype != np.uint8 else ref  # depth: invalid pixels as the tokenizer sees them
    m[f"{tok.modality}_psnr_db"] = psnr(rec, filled, data_range=1.0 if ref.dtype != np.uint8 else None)
    m[f"{tok.modality}_ssim"] = ssim(rec, filled, data_range=1.0 if ref.dtype != np.uint8 else None)
    m.update(score_reconstructions(tok.modality, x, rec, meta))  # the task metrics (rgb: the same PSNR/SSIM)
    m["clips"] = int(len(x))
    return m, ref, rec


# --- pictures --------------------------------------------------------------------------------------


def plot_sequence(path, modality: str, gt: np.ndarray, rec: np.ndarray, k: int = 3) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = min(k, len(gt))
    fig, axes = plt.subplots(1, k, figsize=(4 * k, 3.6), squeeze=False)
    for i in range(k):
        ax = axes[0, i]
        (registry_info.info(modality).plot or registry_info.plot_channels)(ax, gt[i], rec[i])
        ax.set_title(f"clip {i}")
        ax.legend(fontsize=7)
    fig.suptitle(f"{modality} tokenizer: truth vs reconstruction")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_video(path, modality: str, ref: np.ndarray, rec: np.ndarray, frames=(0, 5, 10, 15)) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(frames), figsize=(2.4 * len(frames), 5), squeeze=False)
    for j, f in enumerate(frames):
        for r, (name, v) in enumerate((("input", ref), ("reconstruction", rec))):
            ax = axes[r, j]
            colour = v.dtype == np.uint8  # an RGB image; else a [0, 1] map (normalised inverse depth)
            ax.imshow(v[0, f], cmap=None if colour else "magma", vmin=0, vmax=255 if colour else 1)
            ax.set_title(f"{name} t={f}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- loops -----------------------------------------------------------------------------------------


def _optimizer(model, cfg: TrainConfig, lr: float):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)


def build_sequence_model(modality: str, registry: Registry, cfg: TrainConfig) -> SequenceVQVAE:
    spec = registry[modality]
    kw = dict(VQVAE_PRESETS[cfg.size])
    kw.update(cfg.model)
    mcfg = VQVAEConfig(in_channels=spec.channels, frames=spec.frames,
                       codebook_size=spec.vocab_size, **kw)
    return SequenceVQVAE(mcfg)


@_keeps_torch_threads
def train_sequence(modality: str, clips: list, out, cfg: TrainConfig | None = None, log=print) -> dict:
    """Train a sequence modality's VQ-VAE (gaze, cam, ...) on clips tables; writes ``OUT/<modality>/``; returns the
    evaluation."""
    info = registry_info.info(modality)
    if info.tokenizer != "sequence":
        raise ValueError(f"train_sequence handles sequence modalities ({', '.join(registry_info.names('sequence'))}), "
                         f"not {modality!r}")
    cfg = cfg or TrainConfig()
    torch.manual_seed(cfg.seed)
    registry = get_registry(cfg.registry)
    dev = _device(cfg.device, cfg.threads)
    data = load_sequence_data(clips, modality, cfg.max_clips)
    tr, ev, ev_desc = split_eval(data.splits, cfg.eval_fraction, cfg.seed)
    log(f"{modality}: {len(data.ids)} clips from {len(clips)} table(s); training on {len(tr)}, evaluating on {ev_desc}")
    model = build_sequence_model(modality, registry, cfg).to(dev)
    x_train = augment_sequences(modality, data.x[tr]) if cfg.augment else data.x[tr]  # 4x: mirrored, reversed
    norm = info.norm_stats(x_train) if info.norm_stats is not None else None
    ident = {"kind": "vqvae", "sha256": "training"}
    tok = SequenceTokenizer(modality, model, registry, ident, norm=norm, device=str(dev))
    inp, mask = tok.prepare(x_train)
    inp_t, mask_t = torch.from_numpy(inp).to(dev), torch.from_numpy(mask).to(dev)
    lr = cfg.lr or (1e-3 if cfg.size == "tiny" else 2e-4)
    opt = _optimizer(model, cfg, lr)
    rng = np.random.default_rng(cfg.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{modality}: VQ-VAE {cfg.size} ({n_params / 1e6:.2f} M parameters, {model.cfg.codebook_size} codes) on {dev}, "
        f"{cfg.steps} steps, batch {cfg.batch_size}, lr {lr:g}")
    t0 = time.time()
    model.train()
    bar = _progress(cfg.steps, f"train {modality}")
    for step in range(cfg.steps):
        b = rng.choice(len(inp), size=min(cfg.batch_size, len(inp)), replace=len(inp) < cfg.batch_size)
        loss, st = model.loss(inp_t[b], mask_t[b])
        _optimizer_step(opt, model, loss, _lr_at(step, cfg, lr))
        bar.update(1)
        if (step + 1) % cfg.log_every == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{float(loss.detach()):.4g}", rec=f"{st['rec']:.4g}")
            log(f"{modality} step {step + 1}/{cfg.steps}: loss {float(loss.detach()):.5f} rec {st['rec']:.5f} "
                f"commit {st['commit']:.5f} codes/batch {len(torch.unique(st['indices']))}")
    bar.close()
    model.eval()
    metrics, rec = evaluate_sequence(tok, data.x[ev])
    metrics["train_seconds"] = round(time.time() - t0, 1)
    out_dir = Path(out) / modality
    extra = {"train": {**asdict(cfg), "clips": [str(c) for c in clips], "train_clips": int(len(tr)), "eval_on": ev_desc},
             "eval": metrics}
    ident = save_tokenizer(out_dir, model, kind="vqvae", modality=modality, registry=registry,
                           model_config=model.cfg.to_dict(), norm=norm, extra=extra)
    plot_sequence(out_dir / "eval.png", modality, data.x[ev], rec)
    metrics["checkpoint"] = str(out_dir)
    metrics["sha256"] = ident["sha256"]
    return metrics


@dataclass
class VideoData:
    ids: list[str]
    splits: list[str]
    videos: dict  # {video modality: per clip its standard array or None}
    meta: list = field(default_factory=list)  # per clip: depth_range and depth_raw_valid (depth ground truth)


def load_video_data(paths, max_clips: int | None = None) -> VideoData:
    from ..clips import read_clips

    mods = registry_info.names("video")
    d = VideoData([], [], {m: [] for m in mods})
    for p in paths:
        for c in read_clips(p, skip=[m for m in registry_info.names() if m not in mods]):
            if all(c.get(m) is None for m in mods):
                continue
            d.ids.append(c.clip_id)
            d.splits.append(c.split)
            for m in mods:
                d.videos[m].append(c.get(m))
            d.meta.append(SimpleNamespace(depth_range=c.depth_range, depth_raw_valid=getattr(c, "depth_raw_valid", None)))
            if max_clips and len(d.ids) >= max_clips:
                break
    if not d.ids:
        raise TokenizerError(f"no clip with {' or '.join(mods)} in {[str(p) for p in paths]}")
    return d


def build_video_model(registry: Registry, cfg: TrainConfig) -> CausalVideoFSQ:
    spec = registry[registry_info.names("video")[0]]  # the video modalities share one token grid and FSQ levels
    kw = dict(FSQ_PRESETS[cfg.size])
    kw.update({k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.items()})
    t, h, _ = spec.token_grid
    return CausalVideoFSQ(FSQVideoConfig(levels=tuple(spec.fsq_levels), spatial_downsample=spec.image_size // h,
                                         temporal_downsample=(spec.frames) // (t - 1), **kw))


@_keeps_torch_threads
def train_video(clips: list, out, cfg: TrainConfig | None = None, log=print) -> dict:
    """Train the causal FSQ video tokenizer on the video modalities (RGB and depth) of clips tables; writes
    ``OUT/<modality>`` for each (``OUT/rgb``, ``OUT/depth``)."""
    cfg = cfg or TrainConfig(batch_size=4)
    torch.manual_seed(cfg.seed)
    registry = get_registry(cfg.registry)
    dev = _device(cfg.device, cfg.threads)
    data = load_video_data(clips, cfg.max_clips)
    tr, ev, ev_desc = split_eval(data.splits, cfg.eval_fraction, cfg.seed)
    # training samples: [M, 3, 17, S, S] in [-1, 1], kept as float16 to save memory
    samples = []
    for i in tr:
        for m, vs in data.videos.items():
            v = vs[i]
            if v is not None:
                samples.append(prepare_video(v[None], m, registry[m])[0].half())
    x_all = torch.stack(samples)
    log(f"video: {len(data.ids)} clips ({len(samples)} {'/'.join(data.videos)} videos) from {len(clips)} table(s); "
        f"evaluating on {ev_desc}")
    model = build_video_model(registry, cfg).to(dev)
    lr = cfg.lr or (3e-3 if cfg.size == "tiny" else 2e-4)
    opt = _optimizer(model, cfg, lr)
    rng = np.random.default_rng(cfg.seed)
    log(f"video: causal FSQ {cfg.size} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
        f"levels {model.cfg.levels}, grid {registry[next(iter(data.videos))].token_grid}) on {dev}, {cfg.steps} steps, "
        f"batch {cfg.batch_size}, lr {lr:g}")
    t0 = time.time()
    model.train()
    bar = _progress(cfg.steps, "train video")
    for step in range(cfg.steps):
        b = rng.choice(len(x_all), size=min(cfg.batch_size, len(x_all)), replace=len(x_all) < cfg.batch_size)
        xb = x_all[torch.from_numpy(b)].float().to(dev)
        if rng.random() < 0.5:
            xb = xb.flip(-1)  # horizontal flip augmentation
        loss, st = model.loss(xb)
        _optimizer_step(opt, model, loss, _lr_at(step, cfg, lr))
        bar.update(1)
        if (step + 1) % cfg.log_every == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{float(loss.detach()):.4g}")
            log(f"video step {step + 1}/{cfg.steps}: loss {float(loss.detach()):.5f} l1 {st['l1']:.5f} mse {st['mse']:.5f}")
    bar.close()
    model.eval()
    train_s = round(time.time() - t0, 1)
    metrics: dict = {"train_seconds": train_s}
    extra = {"train": {**asdict(cfg), "clips": [str(c) for c in clips], "train_clips": int(len(tr)), "eval_on": ev_desc}}
    for m, videos in data.videos.items():
        out_dir = Path(out) / m
        ident = save_tokenizer(out_dir, model, kind="fsq", modality=m, registry=registry,
                               model_config=model.cfg.to_dict(), extra=extra)
        have = [i for i in ev if videos[i] is not None]
        if have:
            tok = VideoTokenizer(m, model, registry, ident, device=str(dev))
            mm, ref, rec = evaluate_video(tok, np.stack([videos[i] for i in have]),
                                          meta=[data.meta[i] for i in have])
            plot_video(out_dir / "eval.png", m, ref, rec)
            metrics[m] = mm
            cfg_path = out_dir / "config.json"
            c = json.loads(cfg_path.read_text())
            c["eval"] = mm
            cfg_path.write_text(json.dumps(c, indent=2, default=float))
        metrics[f"{m}_checkpoint"] = str(out_dir)
        metrics["sha256"] = ident["sha256"]
    return metrics
