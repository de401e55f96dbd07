"""Typed configs of the training entry points: Hydra structured configs (dataclasses in Hydra's ConfigStore).

One config system serves ``egom2p-train`` and ``egom2p tokenizer train``:

* the schemas are dataclasses: :class:`TrainRunConfig` (model, data mixture, optimiser, training loop)
  for ``egom2p-train``, and the tokenizer's own ``TrainConfig`` (``egom2p.tokenizers.train``) with a
  typed ``model`` section per tokenizer kind (the fields of ``VQVAEConfig`` or ``FSQVideoConfig``);
* the YAML files in ``egom2p/conf`` (groups ``model``, ``data``, ``optim``, ``preset``) are presets
  merged into the schema;
* ``KEY=VALUE`` overrides of either command go through Hydra's compose API (:func:`compose`).

A value of the wrong type or an unknown key fails at composition, before any token DB, clips table
or model is opened, with a :class:`ConfigError` whose message is one line naming the key and the
expected type (``train.steps='abc': expected int``). The composed, typed config is what each run
saves (``config.yaml`` and ``state.json`` of a training run; ``config.json`` of a tokenizer).
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from .errors import EgoM2PError
from .model import ModelConfig
from .sampler import MixtureConfig

CONF_DIR = Path(__file__).resolve().parent / "conf"


class ConfigError(EgoM2PError, ValueError):
    """A config that cannot be composed: the message is one line naming the key and what was expected."""


# --------------------------------------------------------------------------------------------------
# egom2p-train
# --------------------------------------------------------------------------------------------------


class Device(str, enum.Enum):
    auto = "auto"  # CUDA when available
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, enum.Enum):
    auto = "auto"  # bf16 autocast on CUDA, fp32 on CPU
    bf16 = "bf16"  # bf16 autocast (weights and optimizer state stay fp32)
    fp32 = "fp32"


class Parallel(str, enum.Enum):
    ddp = "ddp"  # replicate the model, all-reduce gradients (torchrun with N > 1 processes)
    fsdp = "fsdp"  # FSDP2 (torch.distributed.fsdp.fully_shard): parameters, gradients, optimizer state sharded


class AttentionImpl(str, enum.Enum):
    auto = "auto"  # flex for training on CUDA, sdpa otherwise (see egom2p.model)
    sdpa = "sdpa"  # F.scaled_dot_product_attention; masks as tensors, None where nothing is masked
    flex = "flex"  # FlexAttention with block masks (compiled)


@dataclass
class ModelSchema(ModelConfig):
    name: str = "base"  # the preset's name (model=tiny|base)


@dataclass
class DataSchema(MixtureConfig):
    db_version: Any = None  # null = latest; an int Lance version or a tag name
    batch_size: int = 256  # global batch (all ranks)


@dataclass
class OptimConfig:
    """AdamW with a cosine schedule whose warm-up and length are counted in tokens (input + target slots)."""

    lr: float = 1e-4
    min_lr: float = 1e-6
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.05
    warmup_tokens: float = 1e8
    grad_clip: float = 1.0
    fused: Optional[bool] = None  # null = the fused AdamW kernel (CUDA and CPU)


@dataclass
class TrainLoopConfig:
    steps: Optional[int] = 1000  # run length in optimizer steps; null when total_tokens sets it
    total_tokens: Optional[float] = None  # run length in tokens (input + target slots, e.g. 500e9); steps derived
    batch_size: int = dataclasses.field(default="${data.batch_size}")  # type: ignore[assignment]  # global batch
    log_every: int = 10
    ckpt_every: int = 100  # also at the last step
    keep_checkpoints: int = 3  # most recent step_* directories kept (0 = all)
    out: str = "runs/egom2p"  # --out overrides
    device: Device = Device.auto
    num_workers: int = 2  # DataLoader workers (spawn); 0 = build batches in the main process
    precision: Precision = Precision.auto
    tf32: bool = True  # TF32 matmuls and convolutions on CUDA (fp32 parts of the step)
    compile: bool = False  # torch.compile the whole model
    attention: AttentionImpl = AttentionImpl.auto
    parallel: Parallel = Parallel.ddp  # with more than one process (torchrun)
    activation_checkpointing: bool = False  # recompute each block's activations in the backward pass
    peak_tflops: Optional[float] = None  # the MFU denominator per device; null = the known bf16 peak of the GPU
    tensorboard: bool = True


@dataclass
class TrainRunConfig:
    """The whole ``egom2p-train`` config (``egom2p/conf/config.yaml`` composes presets into it)."""

    model: ModelSchema = field(default_factory=ModelSchema)
    data: DataSchema = field(default_factory=DataSchema)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    seed: int = 0


TRAIN_SCHEMA = "egom2p_train_schema"


# --------------------------------------------------------------------------------------------------
# egom2p tokenizer train
# --------------------------------------------------------------------------------------------------


def _overrides_of(cls: type, name: str) -> type:
    """A dataclass with every field of ``cls`` optional and null by default: typed ``model.FIELD=VALUE``."""
    hints = typing.get_type_hints(cls)
    return dataclasses.make_dataclass(name, [(f.name, Optional[hints[f.name]], field(default=None))
                                             for f in dataclasses.fields(cls)])


def tokenizer_schema(kind: str) -> type:
    """The typed config of ``egom2p tokenizer train KIND`` (kind: a sequence modality such as gaze or cam, or video)."""
    from .tokenizers.fsq import FSQVideoConfig
    from .modality import names
    from .tokenizers.train import TrainConfig
    from .tokenizers.vqvae import VQVAEConfig

    if kind == "video":
        model_cls, batch = _overrides_of(FSQVideoConfig, "FSQVideoOverrides"), 4
    elif kind in names("sequence"):
        model_cls, batch = _overrides_of(VQVAEConfig, "VQVAEOverrides"), 16
    else:
        raise ConfigError(f"unknown tokenizer kind {kind!r} ({', '.join(names('sequence'))} or video)")
    return dataclasses.make_dataclass(
        f"TokenizerTrainConfig_{kind}",
        [("batch_size", int, field(default=batch)), ("model", model_cls, field(default_factory=model_cls))],
        bases=(TrainConfig,))


def tokenizer_config(kind: str, overrides: list[str]):
    """``egom2p tokenizer train KIND`` options: the typed config with ``overrides`` -> a ``TrainConfig``."""
    from omegaconf import OmegaConf

    from .tokenizers.train import TrainConfig

    name = f"egom2p_tokenizer_{kind}"
    cfg = compose(name, overrides, schemas={name: tokenizer_schema(kind)})
    values = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    values["model"] = {k: v for k, v in values["model"].items() if v is not None}
    return TrainConfig(**values)


# --------------------------------------------------------------------------------------------------
# composition and one-line errors
# --------------------------------------------------------------------------------------------------


def register(schemas: dict[str, type] | None = None) -> None:
    """Put the schemas into Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name=TRAIN_SCHEMA, node=TrainRunConfig)
    for name, node in (schemas or {}).items():
        cs.store(name=name, node=node)


def compose(config_name: str, overrides: list[str] | None = None, schemas: dict[str, type] | None = None):
    """Hydra compose of ``config_name`` (a YAML file in egom2p/conf or a registered schema) with ``overrides``.

    Returns the typed DictConfig (struct mode: unknown keys refused). Raises :class:`ConfigError`.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register(schemas)
    root = (schemas or {}).get(config_name, TrainRunConfig)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            return hydra_compose(config_name, overrides=list(overrides or []))
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(describe_error(e, root)) from None


def merge_overrides(cfg, overrides: list[str], root: type = None):
    """Apply dotted ``KEY=VALUE`` overrides to a composed config (a resumed run's), typed like compose."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    root = root or TrainRunConfig
    try:
        typed = OmegaConf.merge(OmegaConf.structured(root), cfg)
        OmegaConf.set_struct(typed, True)
        for o in OverridesParser.create().parse_overrides(list(overrides)):
            key, value = o.key_or_group, o.value()
            if o.is_delete():
                raise ConfigError(f"{key}: deleting keys is not supported here")
            if o.is_add():
                with open_dict(typed):
                    OmegaConf.update(typed, key, value, merge=True)
            else:
                OmegaConf.update(typed, key, value, merge=True)
        return typed
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(describe_error(e, root)) from None


def to_container(cfg) -> dict:
    """Plain, JSON-able dict of a typed config (enums as their names)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def check(cfg, root: type = None):
    """Instantiate the dataclasses once (runs their ``__post_init__`` checks); -> ``cfg``. Raises ConfigError."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    root = root or TrainRunConfig
    extra = _extra_keys(OmegaConf.to_container(cfg), root)  # keys added with +KEY=VALUE
    if extra:
        key = extra[0]
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        raise ConfigError(f"unknown key {key}; known keys{f' in {parent}' if parent else ''}: "
                          f"{', '.join(_known_keys(root, parent))}")
    try:
        OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(describe_error(e, root)) from None
    except ValueError as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    return cfg


def _extra_keys(values: dict, cls: type, prefix: str = "") -> list[str]:
    """Keys of ``values`` that the dataclass ``cls`` does not declare (recursively into dataclass fields)."""
    hints = typing.get_type_hints(cls)
    out = []
    for k, v in values.items():
        if k not in hints:
            out.append(prefix + str(k))
            continue
        t, _ = _unwrap_optional(hints[k])
        if isinstance(v, dict) and isinstance(t, type) and dataclasses.is_dataclass(t):
            out += _extra_keys(v, t, f"{prefix}{k}.")
    return out


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def describe_error(e: BaseException, root: type) -> str:
    """One line for a Hydra / OmegaConf composition error: the key, the value and the expected type."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

    for x in _chain(e):
        if not isinstance(x, OmegaConfBaseException) or not getattr(x, "full_key", None):
            continue
        key = str(x.full_key)
        if isinstance(x, (ConfigKeyError, ConfigAttributeError)) and "not in" in str(x):
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            known = _known_keys(root, parent)
            where = f" in {parent}" if parent else ""
            return f"unknown key {key}" + (f"; known keys{where}: {', '.join(known)}" if known else "")
        if isinstance(x, ValidationError):
            want = expected_type(root, key)
            got = getattr(x, "value", None)
            return f"{key}={got!r}: expected {want}" if want else f"{key}: {str(x).splitlines()[0]}"
    lines = []
    for ln in str(e).splitlines():
        if ln.startswith("Config search path"):  # Hydra's search path listing: not the user's problem
            break
        if ln.strip():
            lines.append(ln.strip())
    if len(lines) > 1 and lines[1].startswith("Available options"):  # unknown preset of a group
        return f"{lines[0]}; {lines[1].rstrip(':')}: {', '.join(lines[2:])}"
    return "; ".join(lines)[:500] or type(e).__name__


def _field_type(cls: type, name: str):
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        return None
    return typing.get_type_hints(cls).get(name)


def _unwrap_optional(t) -> tuple[Any, bool]:
    if typing.get_origin(t) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return t, False


def _resolve(root: type, key: str):
    """The annotation of dotted ``key`` (list items as ``a.b[0]``) in the schema ``root``; None if unknown."""
    t: Any = root
    for part in key.replace("]", "").replace("[", ".").split("."):
        t, _ = _unwrap_optional(t)
        if part.isdigit() and typing.get_origin(t) in (list, tuple, List):
            args = [a for a in typing.get_args(t) if a is not Ellipsis]
            t = args[0] if args else Any
            continue
        t = _field_type(t, part)
        if t is None:
            return None
    return t


def expected_type(root: type, key: str) -> str | None:
    t = _resolve(root, key)
    return None if t is None else type_name(t)


def type_name(t) -> str:
    t, optional = _unwrap_optional(t)
    if isinstance(t, type) and issubclass(t, enum.Enum):
        s = "one of " + "|".join(m.name for m in t)
    elif t is bool:
        s = "bool (true|false)"
    elif t in (int, float, str):
        s = {int: "int", float: "float", str: "str"}[t]
    elif typing.get_origin(t) in (list, tuple):
        args = [a for a in typing.get_args(t) if a is not Ellipsis]
        s = f"list of {type_name(args[0])}" if args else "list"
    elif typing.get_origin(t) is dict:
        s = "mapping"
    elif isinstance(t, type) and dataclasses.is_dataclass(t):
        s = f"a {t.__name__} section"
    else:
        s = "any value"
    return s + (" or null" if optional else "")


def _known_keys(root: type, parent: str) -> list[str]:
    t = _resolve(root, parent) if parent else root
    t, _ = _unwrap_optional(t)
    if isinstance(t, type) and dataclasses.is_dataclass(t):
        return [f.name for f in dataclasses.fields(t)]
    return []
