"""Training checkpoints: everything needed to continue a run exactly or to use the model elsewhere.

A checkpoint is a directory ``<out>/checkpoints/step_XXXXXXX/``::

    model.safetensors   model weights (safetensors; no pickle)
    optimizer.pt        AdamW state (tensors and numbers only; read with torch.load(weights_only=True))
    rng.pt              torch CPU (and CUDA) generator states
    state.json          step, tokens seen, sampler state, the composed config, the model config, the
                        modality registry snapshot, the token DB (path, pinned Lance version, format,
                        tokenizer identities) and the code version (package version + git sha)

``<out>/checkpoints/latest`` is a text file naming the newest step directory; ``resolve_checkpoint``
accepts a run directory, its ``checkpoints`` directory or a step directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .modalities import Registry
from .errors import EgoM2PError

CKPT_FORMAT = "egom2p-ckpt/1"


class CheckpointError(EgoM2PError, RuntimeError):
    pass


def code_version() -> dict:
    """{"package": version, "git_sha": sha or None, "dirty": bool or None} of the code running now."""
    root = Path(__file__).resolve().parents[1]
    out = {"package": __version__, "git_sha": None, "dirty": None}
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if sha.returncode == 0:
            out["git_sha"] = sha.stdout.strip()
            st = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
            out["dirty"] = bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _state_dict_for_save(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def save_checkpoint(directory: str | os.PathLike, *, model: torch.nn.Module, optimizer=None, state: dict,
                    keep: int = 0) -> Path:
    """Write ``directory`` (a step directory) atomically and point ``../latest`` at it."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(_state_dict_for_save(model), str(tmp / "model.safetensors"), metadata={"format": CKPT_FORMAT})
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    full = {"format": CKPT_FORMAT, "code": code_version(), **state}
    (tmp / "state.json").write_text(json.dumps(full, indent=1, sort_keys=True, default=str))
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
    (directory.parent / "latest").write_text(directory.name + "\n")
    if keep > 0:
        steps = sorted(p for p in directory.parent.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
        for old in steps[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return directory


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A step directory from a step directory, a checkpoints directory or a run directory."""
    p = Path(path)
    for cand in (p, p / "checkpoints"):
        if (cand / "state.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
        latest = cand / "latest"
        if latest.is_file():
            step = cand / latest.read_text().strip()
            if (step / "state.json").is_file():
                return step
    raise CheckpointError(f"{path}: no checkpoint here (expected state.json + model.safetensors, or a "
                          "checkpoints/latest file)")


def read_state(ckpt: str | os.PathLike) -> dict:
    d = resolve_checkpoint(ckpt)
    try:
        state = json.loads((d / "state.json").read_text())
    except ValueError as e:
        raise CheckpointError(f"{d / 'state.json'}: unreadable ({e})") from e
    if state.get("format") != CKPT_FORMAT:
        raise CheckpointError(f"{d}: checkpoint format {state.get('format')!r}, this code reads {CKPT_FORMAT!r}")
    return state


def load_weights(model: torch.nn.Module, ckpt: str | os.PathLike, strict: bool = True) -> None:
    d = resolve_checkpoint(ckpt)
    sd = load_file(str(d / "model.safetensors"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if strict and (missing or unexpected):
        raise CheckpointError(f"{d}: weights do not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})")


def load_training_state(ckpt: str | os.PathLike, optimizer=None, map_location="cpu") -> dict:
    """Restore optimizer and RNG states in place; returns state.json."""
    d = resolve_checkpoint(ckpt)
    state = read_state(d)
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(d / "optimizer.pt", map_location=map_location, weights_only=True))
    rng = torch.load(d / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state


def load_model(ckpt_dir: str | os.PathLike, device: str | torch.device = "cpu"):
    """(model in eval mode on ``device``, its modality Registry, info dict) from a training checkpoint.

    info: the checkpoint's state.json (step, config, token DB path/version, code version, ...) plus
    ``"path"``, the resolved step directory.
    """
    from .model import EgoM2P, ModelConfig

    d = resolve_checkpoint(ckpt_dir)
    state = read_state(d)
    registry = Registry.from_snapshot(state["registry"])
    model = EgoM2P(ModelConfig.from_dict(state["model"]), registry)
    load_weights(model, d)
    model.to(device).eval()
    return model, registry, {**state, "path": str(d)}
