"""Tokenizer checkpoints: writing, verifying and loading ``config.json`` + ``model.safetensors`` (or Cosmos'
TorchScript files); see :mod:`egom2p.tokenizers` for the format."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import IntegrityError
from ..integrity import atomic_write_text, file_sha256, verify_file, warn_unverified
from ..modality import MODALITY_INFO
from ..modalities import Registry, get_registry
from .base import Tokenizer, TokenizerError, resolve_device
from .sequence_tokenizer import SequenceTokenizer
from .video_tokenizer import VideoTokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_NORM_MEAN, _NORM_STD = "__norm__.mean", "__norm__.std"


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
        name = modality or d.name
        if is_cosmos_dir(d) or (name in MODALITY_INFO and MODALITY_INFO[name].tokenizer == "video"):
            cfg = {"kind": "cosmos", "modality": name}
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
    if mod not in MODALITY_INFO:
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
        raise TokenizerError(f"{d}: tokenizer directory not found (expected sub-directories {', '.join(MODALITY_INFO)})")
    wanted = list(modalities) if modalities is not None else [m for m in MODALITY_INFO if (d / m).is_dir()]
    if not wanted:
        raise TokenizerError(f"{d}: no tokenizer sub-directory ({', '.join(MODALITY_INFO)}) found")
    out: dict[str, Tokenizer] = {}
    for m in wanted:
        if not (d / m).is_dir():
            raise TokenizerError(f"{d / m}: tokenizer for {m} not found")
        out[m] = load_tokenizer(d / m, registry=registry, device=device, modality=m)
    regs = {t.registry.config for t in out.values()}
    if len(regs) > 1:
        raise TokenizerError(f"{d}: tokenizers were made for different registries {sorted(regs)}")
    return out
