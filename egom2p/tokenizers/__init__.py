"""Tokenizers: standard-clip arrays <-> discrete tokens, one per modality, behind one interface.

* gaze, cam: the Transformer VQ-VAE (:mod:`.vqvae`), 60 frames -> 30 tokens;
* rgb, depth: a causal video tokenizer with FSQ indices, either NVIDIA's Cosmos DV4x8x8 TorchScript
  checkpoint (:mod:`.cosmos`) or the project's own trainable one (:mod:`.fsq`); depth goes through
  the same tokenizer as 3-channel inverse depth (NaN -> 0).

``Tokenizer.encode`` takes batched standard-clip arrays and returns int64 [B, spec.num_tokens]:

=====  ==============================  ==============================================
name   encode input                    decode output
=====  ==============================  ==============================================
rgb    uint8 [B, 60, H, W, 3]          uint8 [B, 16, S, S, 3] (the 16 token frames, 8 FPS)
depth  float32 [B, 60, H, W] in [0,1]  float32 [B, 16, S, S] in [0, 1]
gaze   float32 [B, 60, 2], NaN invalid float32 [B, 60, 2]
cam    float32 [B, 60, 4, 4] c2w       float32 [B, 60, 4, 4]
=====  ==============================  ==============================================

Checkpoints: a directory per modality with ``config.json`` (kind, modality, registry config name and
snapshot, model config, normalisation statistics, training and evaluation summaries, and the sha256
and size of the weights) and ``model.safetensors``; or, for Cosmos, a directory with ``encoder.jit``
and ``decoder.jit``. Both files are written through a rename, config.json last; loading verifies the
weights against the recorded sha256 and names a damaged or truncated file.
:func:`load_tokenizers` reads ``DIR/{rgb,depth,gaze,cam}/`` and checks every checkpoint against the
modality registry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import EgoM2PError, IntegrityError
from ..geometry import c2w_to_pose9d, pose9d_to_c2w
from ..integrity import atomic_write_text, file_sha256, verify_file, warn_unverified
from ..modalities import GAZE_VALID_RANGE, MODALITIES, ModalitySpec, Registry, get_registry
from ..video import pad_causal, token_frame_indices

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_NORM_MEAN, _NORM_STD = "__norm__.mean", "__norm__.std"


class TokenizerError(EgoM2PError, RuntimeError):
    """A tokenizer checkpoint or input is unusable; the message names the file or the problem."""


def resolve_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --- the interface --------------------------------------------------------------------------------


class Tokenizer:
    """Standard-clip arrays of one modality <-> int64 tokens [B, spec.num_tokens]."""

    modality: str
    spec: ModalitySpec
    registry: Registry
    identity: dict  # at least "kind" and "sha256" of the checkpoint

    def encode(self, x) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - abstract

    def decode(self, tokens) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - abstract

    def to(self, device) -> "Tokenizer":
        raise NotImplementedError  # pragma: no cover - abstract

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.modality}, kind={self.identity.get('kind')}, "
                f"registry={self.registry.config}, sha256={str(self.identity.get('sha256'))[:12]})")


def fill_invalid_gaze(gaze: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaze [B, 60, 2] with NaN / out-of-range rows -> (filled gaze, valid mask [B, 60]).

    Invalid frames are linearly interpolated between valid neighbours (held constant at the ends);
    a clip without any valid frame is filled with the image centre (0.5, 0.5). The mask keeps them
    out of the loss and the metrics.
    """
    g = np.asarray(gaze, dtype=np.float32)
    lo, hi = GAZE_VALID_RANGE
    valid = np.all(np.isfinite(g), axis=-1) & np.all((g >= lo) & (g <= hi), axis=-1)
    out = np.empty_like(g)
    t = np.arange(g.shape[1])
    for b in range(g.shape[0]):
        v = valid[b]
        if not v.any():
            out[b] = 0.5
            continue
        for c in range(g.shape[2]):
            out[b, :, c] = np.interp(t, t[v], g[b, v, c])
    return out, valid


class SequenceTokenizer(Tokenizer):
    """gaze / cam through a :class:`~.vqvae.SequenceVQVAE`."""

    def __init__(self, modality: str, model, registry: Registry, identity: dict, norm: dict | None = None,
                 device: str | None = "cpu"):
        self.modality, self.registry, self.spec = modality, registry, registry[modality]
        self.model = model.eval()
        self.identity = identity
        self.device = resolve_device(device)
        self.model.to(self.device)
        if modality == "cam":
            if norm is None:
                raise TokenizerError("the cam tokenizer needs the 9D normalisation statistics (mean, std)")
            self.mean = np.asarray(norm["mean"], np.float32)
            self.std = np.asarray(norm["std"], np.float32)
        elif modality != "gaze":
            raise TokenizerError(f"a sequence tokenizer handles gaze or cam, not {modality!r}")

    def to(self, device):
        self.device = resolve_device(device)
        self.model.to(self.device)
        return self

    def prepare(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Standard arrays -> (model input float32 [B, 60, C], valid mask [B, 60])."""
        x = np.asarray(x, dtype=np.float32)
        n = self.spec.frames
        if self.modality == "gaze":
            if x.ndim != 3 or x.shape[1:] != (n, 2):
                raise TokenizerError(f"gaze tokenizer needs float32 [B,{n},2], got {x.shape}")
            return fill_invalid_gaze(x)
        if x.ndim != 4 or x.shape[1:] != (n, 4, 4):
            raise TokenizerError(f"cam tokenizer needs float32 [B,{n},4,4], got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise TokenizerError("cam poses must be finite")
        v = c2w_to_pose9d(x.astype(np.float64)).astype(np.float32)
        return (v - self.mean) / self.std, np.ones(x.shape[:2], bool)

    def encode(self, x) -> np.ndarray:
        inp, _ = self.prepare(x)
        with torch.no_grad():
            idx = self.model.encode_indices(torch.from_numpy(inp).to(self.device))
        return idx.cpu().numpy().astype(np.int64)

    def decode_model_space(self, tokens) -> np.ndarray:
        idx = torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=self.device)
        with torch.no_grad():
            return self.model.decode_indices(idx).float().cpu().numpy()

    def decode(self, tokens) -> np.ndarray:
        out = self.decode_model_space(tokens)
        if self.modality == "gaze":
            return out.astype(np.float32)
        v = out * self.std + self.mean
        return pose9d_to_c2w(v.astype(np.float64)).astype(np.float32)


def prepare_video(x, modality: str, spec: ModalitySpec, frame_idx=None) -> torch.Tensor:
    """Standard clip rgb uint8 [B,60,H,W,3] or depth [B,60,H,W] -> B x 3 x 17 x S x S float in [-1, 1].

    Takes the 16 token frames (:func:`egom2p.video.token_frame_indices`), resizes to the registry's
    S x S, replicates depth (NaN -> 0) to 3 channels and pads time causally to 1 + 4k frames.
    """
    x = np.asarray(x)
    frame_idx = token_frame_indices() if frame_idx is None else frame_idx
    S = spec.image_size
    if modality == "rgb":
        if x.ndim != 5 or x.shape[-1] != 3 or x.dtype != np.uint8:
            raise TokenizerError(f"rgb tokenizer needs uint8 [B,60,H,W,3], got {x.dtype} {x.shape}")
        v = torch.from_numpy(np.ascontiguousarray(x[:, frame_idx])).float().div(127.5).sub(1)
        v = v.permute(0, 4, 1, 2, 3)  # [B, 3, 16, H, W]
    else:
        if x.ndim != 4:
            raise TokenizerError(f"depth tokenizer needs float32 [B,60,H,W], got {x.shape}")
        d = np.nan_to_num(np.asarray(x[:, frame_idx], np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        v = torch.from_numpy(np.clip(d, 0, 1)).mul(2).sub(1)[:, None].expand(-1, 3, -1, -1, -1)
    b, c, t, h, w = v.shape
    if (h, w) != (S, S):
        flat = v.reshape(b, c * t, h, w)
        if h > S:
            flat = F.interpolate(flat, size=(S, S), mode="area")
        else:
            flat = F.interpolate(flat, size=(S, S), mode="bilinear", align_corners=False)
        v = flat.reshape(b, c, t, S, S)
    v = pad_causal(v.permute(2, 0, 1, 3, 4)).permute(1, 2, 0, 3, 4)  # pad time to 1 + 4k
    return v.contiguous()


class VideoTokenizer(Tokenizer):
    """rgb / depth through a causal video backend with ``encode_indices`` / ``decode_indices``."""

    def __init__(self, modality: str, backend, registry: Registry, identity: dict, device: str | None = "cpu"):
        if modality not in ("rgb", "depth"):
            raise TokenizerError(f"a video tokenizer handles rgb or depth, not {modality!r}")
        self.modality, self.registry, self.spec = modality, registry, registry[modality]
        self.backend = backend
        self.identity = identity
        self.device = resolve_device(device)
        self.backend.to(self.device)
        self.frame_idx = token_frame_indices()

    def to(self, device):
        self.device = resolve_device(device)
        self.backend.to(self.device)
        return self

    def prepare(self, x) -> torch.Tensor:
        """Standard clip video -> B x 3 x 17 x S x S float in [-1, 1] (16 token frames padded causally)."""
        return prepare_video(x, self.modality, self.spec, self.frame_idx)

    def encode(self, x) -> np.ndarray:
        v = self.prepare(x).to(self.device)
        idx = self.backend.encode_indices(v)
        grid = tuple(self.spec.token_grid)
        if tuple(idx.shape[1:]) != grid:
            raise TokenizerError(f"{self.identity.get('kind')} tokenizer gave a token grid {tuple(idx.shape[1:])}, "
                                 f"the registry ({self.registry.config}) says {grid}")
        out = idx.reshape(idx.shape[0], -1).cpu().numpy().astype(np.int64)
        if out.size and (out.min() < 0 or out.max() >= self.spec.vocab_size):
            raise TokenizerError(f"{self.modality} tokens outside [0, {self.spec.vocab_size})")
        return out

    def decode(self, tokens) -> np.ndarray:
        idx = torch.as_tensor(np.asarray(tokens), dtype=torch.long).reshape(-1, *self.spec.token_grid).to(self.device)
        video = self.backend.decode_indices(idx)[:, :, : self.spec.frames].float().cpu()  # [B, 3, 16, S, S]
        if self.modality == "rgb":
            return ((video.permute(0, 2, 3, 4, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        return ((video.mean(1) + 1) / 2).clamp(0, 1).numpy().astype(np.float32)


# --- checkpoints -----------------------------------------------------------------------------------


def _resolve_registry(cfg: dict, registry, where: str) -> Registry:
    snap = cfg.get("registry_snapshot")
    name = cfg.get("registry")
    if snap is None or name is None:
        raise TokenizerError(f"{where}: config.json lacks the registry name and snapshot")
    if registry is not None:
        reg = get_registry(registry) if isinstance(registry, str) else registry
        reg.check_compatible(snap, what=f"tokenizer checkpoint {where}")
        return reg
    try:
        code_reg = get_registry(name)
    except KeyError as e:
        raise TokenizerError(f"{where}: unknown registry config {name!r}") from e
    code_reg.check_compatible(snap, what=f"tokenizer checkpoint {where} (written for registry {name!r})")
    return code_reg


def save_tokenizer(directory, model: torch.nn.Module, *, kind: str, modality: str, registry: Registry,
                   model_config: dict, norm: dict | None = None, extra: dict | None = None) -> dict:
    """Write ``model.safetensors`` + ``config.json``; returns the identity (with the weights' sha256)."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if norm is not None:
        state[_NORM_MEAN] = torch.tensor(norm["mean"], dtype=torch.float32)
        state[_NORM_STD] = torch.tensor(norm["std"], dtype=torch.float32)
    tmp = d / f".{WEIGHTS_FILE}.tmp"
    save_file(state, str(tmp))  # no header metadata: its key order is not stable, the sha256 must be
    sha, size = file_sha256(tmp), tmp.stat().st_size
    os.replace(tmp, d / WEIGHTS_FILE)
    cfg = {"kind": kind, "modality": modality, "registry": registry.config, "registry_snapshot": registry.snapshot(),
           "model": model_config, "norm": norm, "sha256": sha, "bytes": size, **(extra or {})}
    atomic_write_text(d / CONFIG_FILE, json.dumps(cfg, indent=2, default=float))  # last: records the weights' hash
    return {"kind": kind, "modality": modality, "registry": registry.config, "sha256": sha}


def _verified_sha256(wpath: Path, cfg: dict) -> str:
    """The weights' sha256, checked against the one config.json recorded (TokenizerError naming the file)."""
    if not cfg.get("sha256"):
        warn_unverified(wpath, f"no sha256 in {CONFIG_FILE}")
        return file_sha256(wpath)
    try:
        verify_file(wpath, {"sha256": cfg["sha256"], "bytes": cfg.get("bytes")},
                    recorded_in=str(wpath.parent / CONFIG_FILE))
    except IntegrityError as e:
        raise TokenizerError(str(e)) from e
    return cfg["sha256"]


def _load_state(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:
        raise TokenizerError(f"{path}: cannot read the safetensors weights ({type(e).__name__}: {str(e)[:200]})") from e


def load_tokenizer(directory, registry: Registry | str | None = None, device: str | None = "cpu",
                   modality: str | None = None) -> Tokenizer:
    """Load one tokenizer checkpoint directory (config.json + model.safetensors, or Cosmos .jit files)."""
    from .cosmos import CosmosVideoBackend, check_cosmos_dir, is_cosmos_dir
    from .fsq import CausalVideoFSQ, FSQVideoConfig
    from .vqvae import SequenceVQVAE, VQVAEConfig

    d = Path(directory)
    where = os.fspath(d)
    cfg_path = d / CONFIG_FILE
    if not cfg_path.is_file():
        if is_cosmos_dir(d) or (modality in ("rgb", "depth") or d.name in ("rgb", "depth")):
            cfg = {"kind": "cosmos", "modality": modality or d.name}
        else:
            raise TokenizerError(f"{where}: no {CONFIG_FILE} (a tokenizer checkpoint has config.json + {WEIGHTS_FILE}, "
                                 "or encoder.jit + decoder.jit for Cosmos)")
    else:
        try:
            cfg = json.loads(cfg_path.read_text())
        except ValueError as e:
            raise TokenizerError(f"{cfg_path}: unreadable JSON ({e})") from e
    kind, mod = cfg.get("kind"), cfg.get("modality")
    if modality is not None and mod != modality:
        raise TokenizerError(f"{where}: checkpoint is for modality {mod!r}, expected {modality!r}")
    if mod not in MODALITIES:
        raise TokenizerError(f"{where}: unknown modality {mod!r}")

    if kind == "cosmos":
        check_cosmos_dir(d)
        reg = get_registry(registry or cfg.get("registry") or "base") if not isinstance(registry, Registry) else registry
        spec = reg[mod]
        if tuple(spec.fsq_levels or ()) != (8, 8, 8, 5, 5, 5):
            raise TokenizerError(f"{where}: Cosmos DV4x8x8 has FSQ levels (8,8,8,5,5,5); registry {reg.config!r} "
                                 f"uses {spec.fsq_levels} for {mod}")
        backend = CosmosVideoBackend(d, device=str(resolve_device(device)))
        ident = {"kind": "cosmos", "name": "Cosmos-Tokenizer-DV4x8x8", "modality": mod, "registry": reg.config,
                 "sha256": backend.sha256}
        return VideoTokenizer(mod, backend, reg, ident, device=device)

    reg = _resolve_registry(cfg, registry, where)
    wpath = d / WEIGHTS_FILE
    if not wpath.is_file():
        raise TokenizerError(f"{where}: missing {WEIGHTS_FILE}")
    sha = _verified_sha256(wpath, cfg)
    state = _load_state(wpath)
    ident = {"kind": kind, "modality": mod, "registry": reg.config, "sha256": sha}
    if kind == "vqvae":
        mcfg = VQVAEConfig(**cfg["model"])
        spec = reg[mod]
        if mcfg.codebook_size != spec.vocab_size or mcfg.frames // 2 != spec.num_tokens:
            raise TokenizerError(f"{where}: VQ-VAE with {mcfg.codebook_size} codes / {mcfg.frames // 2} tokens does not "
                                 f"match registry {reg.config!r} ({spec.vocab_size} / {spec.num_tokens})")
        norm = None
        if _NORM_MEAN in state:
            norm = {"mean": state.pop(_NORM_MEAN).numpy(), "std": state.pop(_NORM_STD).numpy()}
        model = SequenceVQVAE(mcfg)
        model.load_state_dict(state)
        return SequenceTokenizer(mod, model, reg, ident, norm=norm, device=device)
    if kind == "fsq":
        mcfg = FSQVideoConfig.from_dict(cfg["model"])
        spec = reg[mod]
        if tuple(mcfg.levels) != tuple(spec.fsq_levels):
            raise TokenizerError(f"{where}: FSQ levels {mcfg.levels} do not match registry {reg.config!r} {spec.fsq_levels}")
        model = CausalVideoFSQ(mcfg)
        model.load_state_dict(state)
        return VideoTokenizer(mod, model.eval(), reg, ident, device=device)
    raise TokenizerError(f"{where}: unknown tokenizer kind {kind!r} (known: vqvae, fsq, cosmos)")


def load_tokenizers(directory, registry: Registry | str | None = None, device: str | None = "cpu",
                    modalities=None) -> dict[str, Tokenizer]:
    """{modality: Tokenizer} from ``DIR/<modality>/`` for each sub-directory present (all share a registry)."""
    d = Path(directory)
    if not d.is_dir():
        raise TokenizerError(f"{d}: tokenizer directory not found (expected sub-directories {', '.join(MODALITIES)})")
    wanted = list(modalities) if modalities is not None else [m for m in MODALITIES if (d / m).is_dir()]
    if not wanted:
        raise TokenizerError(f"{d}: no tokenizer sub-directory ({', '.join(MODALITIES)}) found")
    out: dict[str, Tokenizer] = {}
    for m in wanted:
        if not (d / m).is_dir():
            raise TokenizerError(f"{d / m}: tokenizer for {m} not found")
        out[m] = load_tokenizer(d / m, registry=registry, device=device, modality=m)
    regs = {t.registry.config for t in out.values()}
    if len(regs) > 1:
        raise TokenizerError(f"{d}: tokenizers were made for different registries {sorted(regs)}")
    return out


__all__ = [
    "Tokenizer", "SequenceTokenizer", "VideoTokenizer", "TokenizerError", "fill_invalid_gaze", "load_tokenizer",
    "load_tokenizers", "save_tokenizer", "file_sha256",
]
