"""Training checkpoints: everything needed to continue a run exactly or to use the model elsewhere.

A checkpoint is a directory ``<out>/checkpoints/step_XXXXXXX/``::

    model.safetensors   model weights (safetensors; no pickle)
    optimizer.pt        AdamW state (tensors and numbers only; read with torch.load(weights_only=True))
    rng.pt              torch CPU (and CUDA) generator states
    state.json          step, tokens seen, sampler state, the composed config, the model config, the
                        modality registry snapshot, the token DB (path, pinned Lance version, format,
                        tokenizer identities) and the code version (package version + git sha)
    manifest.json       sha256 and size of each file above, written last (egom2p.integrity)

The step directory is written under a temporary name and renamed when complete.
``<out>/checkpoints/latest`` is a text file naming the newest step directory; ``resolve_checkpoint``
accepts a run directory, its ``checkpoints`` directory or a step directory. Every load verifies the
files it reads against the manifest and names a damaged or truncated file (checkpoints written
before manifests existed load with a one-line warning); :func:`resume_point` falls back to the
newest intact checkpoint of a run.
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
from .errors import EgoM2PError, IntegrityError, warn
from .integrity import verify_all, verify_in_manifest, write_manifest
from .modalities import Registry

CKPT_FORMAT = "egom2p-ckpt/1"
WEIGHTS, OPTIMIZER, RNG, STATE = "model.safetensors", "optimizer.pt", "rng.pt", "state.json"


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
    save_file(_state_dict_for_save(model), str(tmp / WEIGHTS), metadata={"format": CKPT_FORMAT})
    files = [WEIGHTS, RNG, STATE]
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
        files.append(OPTIMIZER)
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / RNG)
    full = {"format": CKPT_FORMAT, "code": code_version(), **state}
    (tmp / STATE).write_text(json.dumps(full, indent=1, sort_keys=True, default=str))
    write_manifest(tmp, files)  # last: a directory with a manifest is complete
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
    verify_in_manifest(d, STATE)
    try:
        state = json.loads((d / STATE).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{d / STATE}: unreadable ({e})") from e
    if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT:
        fmt = state.get("format") if isinstance(state, dict) else None
        raise CheckpointError(f"{d}: checkpoint format {fmt!r}, this code reads {CKPT_FORMAT!r}")
    return state


def _torch_load(path: Path, **kw):
    """``torch.load(weights_only=True)`` of a checkpoint file, verified against the manifest first."""
    verify_in_manifest(path.parent, path.name)
    try:
        return torch.load(path, weights_only=True, **kw)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: missing") from e
    except Exception as e:  # torch raises RuntimeError, pickle.UnpicklingError, EOFError, ... on damage
        raise CheckpointError(f"{path}: unreadable ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from e


def load_weights(model: torch.nn.Module, ckpt: str | os.PathLike, strict: bool = True) -> None:
    d = resolve_checkpoint(ckpt)
    verify_in_manifest(d, WEIGHTS)
    try:
        sd = load_file(str(d / WEIGHTS))
    except Exception as e:  # SafetensorError on a damaged header or truncated data
        reason = " ".join(str(e).split())[:200]
        raise CheckpointError(f"{d / WEIGHTS}: unreadable ({type(e).__name__}: {reason})") from e
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if strict and (missing or unexpected):
        raise CheckpointError(f"{d}: weights do not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})")


def load_training_state(ckpt: str | os.PathLike, optimizer=None, map_location="cpu") -> dict:
    """Restore optimizer and RNG states in place (both read and verified before either is applied); returns
    state.json."""
    d = resolve_checkpoint(ckpt)
    state = read_state(d)
    opt_state = _torch_load(d / OPTIMIZER, map_location=map_location) if optimizer is not None else None
    rng = _torch_load(d / RNG)
    if optimizer is not None:
        optimizer.load_state_dict(opt_state)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state


def verify_checkpoint(step_dir: str | os.PathLike, needs=(STATE, WEIGHTS, OPTIMIZER, RNG)) -> Path:
    """Check a step directory completely (``needs`` present, every manifest file intact, state.json readable)."""
    d = Path(step_dir)
    for name in needs:
        if not (d / name).is_file():
            raise CheckpointError(f"{d / name}: missing")
    verify_all(d)
    read_state(d)
    return d


def resume_point(path: str | os.PathLike, say=None) -> Path:
    """The step directory to resume from: ``path`` itself when it is a step directory (refused if damaged),
    else the newest intact checkpoint of the run, saying which damaged ones were skipped."""
    p = Path(path)
    if (p / STATE).is_file():
        return verify_checkpoint(p)
    root = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    steps = sorted((s for s in root.glob("step_*") if s.is_dir() and not s.name.endswith(".tmp")), reverse=True)
    if not steps:
        resolve_checkpoint(p)  # the usual "no checkpoint here" error
    skipped = []
    for s in steps:
        try:
            verify_checkpoint(s)
        except (CheckpointError, IntegrityError) as e:
            skipped.append(str(e))
            continue
        if skipped:
            (say or warn)(f"note: resuming from {s}, the newest intact checkpoint; skipped {len(skipped)} damaged: "
                + "; ".join(skipped))
        return s
    raise CheckpointError(f"{root}: no intact checkpoint to resume from ({'; '.join(skipped) or 'none found'})")


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
