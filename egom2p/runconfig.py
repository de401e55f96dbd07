"""Typed run configs: one dataclass per entry point is the single source of its CLI flags, its Prefect
flow's parameters and its ``prefect.yaml`` defaults.

A run config is a dataclass whose fields are declared with :func:`option` (default, help text, CLI
details). From it:

* :func:`add_arguments` / :func:`from_args`: the flags of ``egom2p <command>`` and the config from the
  parsed flags (``--depth-option KEY=VALUE`` style repeatable options fill ``dict`` fields);
* :func:`config_flow`: a Prefect flow whose parameters are the config's fields (names, types, defaults
  and descriptions, so the Prefect UI and ``prefect deployment run -p NAME=VALUE`` take exactly them)
  and whose body receives the config object;
* :func:`deployment_parameters`: the parameters a deployment in ``prefect.yaml`` sets (fields declared
  with ``deploy=``), see :mod:`egom2p.flows.deployments`.

Bad values raise :class:`ConfigError`, whose one-line message names the parameter in both spellings
(:func:`param`: ``depth_checkpoint (--depth-checkpoint)``). This module imports nothing heavy: the
commands read their config and check it before Prefect, Ray or torch are imported.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import inspect
import json
import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import EgoM2PError
from .storage import is_uri, local_path


class ConfigError(EgoM2PError, ValueError):
    """A bad parameter value or input path of a run; the message names the parameter and the problem."""


def option(default: Any = dataclasses.MISSING, help: str = "", *, default_factory: Any = dataclasses.MISSING,
           flag: str | None = None, positional: bool = False, choices: tuple | None = None, metavar: str | None = None,
           cli: bool = True, deploy: Any = None) -> Any:
    """A config field. ``flag``: the CLI flag (default ``--field-name``; for a bool defaulting to True,
    the flag that turns it off); ``positional``: a positional CLI argument; ``cli=False``: no flag (a
    flow parameter only); ``deploy``: its value in every deployment of prefect.yaml (a string may name
    other deployment parameters, e.g. ``"data/raw/{dataset}"``)."""
    meta = {"help": help, "flag": flag, "positional": positional, "choices": choices, "metavar": metavar,
            "cli": cli, "deploy": deploy}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def _fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _base_type(tp) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return inspect.Parameter.empty


def flag_of(f: dataclasses.Field) -> str:
    """The CLI flag of a field: given, or ``--field-name`` (``--no-field-name`` for a bool that defaults to True)."""
    return f.metadata.get("flag") or ("--no-" if f.default is True else "--") + f.name.replace("_", "-")


def param(cls, name: str) -> str:
    """``name (--flag)``: how a parameter is spelled in flows/deployments and on the command line."""
    f = next(f for f in _fields(cls) if f.name == name)
    if not f.metadata.get("cli", True):
        return name
    return f"{name} ({f.name.upper() if f.metadata.get('positional') else flag_of(f)})"


# ----------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One argparse argument per CLI field of the config ``cls``."""
    hints = typing.get_type_hints(cls)
    for f in _fields(cls):
        m = f.metadata
        if not m.get("cli", True):
            continue
        tp, default = _base_type(hints[f.name]), _default(f)
        required = default is inspect.Parameter.empty
        kw: dict[str, Any] = {"help": m.get("help", "")}
        if m.get("choices"):
            kw["choices"] = m["choices"]
        if m.get("metavar"):
            kw["metavar"] = m["metavar"]
        if tp is bool:
            kw["action"] = "store_false" if default else "store_true"
        elif tp is dict or typing.get_origin(tp) is dict:
            kw.update(action="append", default=[], metavar=m.get("metavar") or "KEY=VALUE")
            kw["help"] += " (value parsed as JSON when it can be; repeatable)"
        elif typing.get_origin(tp) is list:
            kw.update(nargs="+", type=typing.get_args(tp)[0] if typing.get_args(tp) else str)
        else:
            kw["type"] = tp
        if tp is not bool and not isinstance(kw.get("default"), list) and not required:
            kw["default"] = default
            if default is not None:
                kw["help"] += f" (default: {default})"
        if m.get("positional"):
            parser.add_argument(f.name, **kw)
        else:
            parser.add_argument(flag_of(f), dest=f.name, required=required, **kw)


def _key_value(cls, f: dataclasses.Field, text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"{param(cls, f.name)} needs KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def from_args(cls, args: argparse.Namespace):
    """The config ``cls`` from parsed CLI arguments (fields without a flag keep their defaults)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in _fields(cls):
        if not f.metadata.get("cli", True):
            continue
        v = getattr(args, f.name)
        tp = _base_type(hints[f.name])
        if (tp is dict or typing.get_origin(tp) is dict) and isinstance(v, list):
            v = dict(_key_value(cls, f, t) for t in v)
        values[f.name] = v
    return make(cls, **values)


def make(cls, **values):
    """``cls(**values)``; a value the config refuses becomes a :class:`ConfigError`."""
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


# --------------------------------------------------------------------------------------- flows
def signature(cls) -> inspect.Signature:
    """The config's fields as a function signature (names, annotations, defaults)."""
    hints = typing.get_type_hints(cls)
    return inspect.Signature([inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                default=_default(f), annotation=hints[f.name])
                              for f in _fields(cls)], return_annotation=dict)


def config_flow(cls, **flow_kwargs) -> Callable[[Callable], Any]:
    """Decorator: ``body(config) -> dict`` becomes a Prefect flow whose parameters are the fields of ``cls``.

    Calling the flow (in-process or from a deployment) builds ``cls(**parameters)`` and runs ``body``
    on it; the parameters' descriptions are the fields' help texts.
    """
    from prefect import flow

    sig = signature(cls)

    def decorate(body: Callable) -> Any:
        def entry(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            return body(make(cls, **copy.deepcopy(bound.arguments)))

        functools.update_wrapper(entry, body)
        del entry.__wrapped__  # the signature is the config's, not body's
        entry.__signature__ = sig
        entry.__annotations__ = {**{p.name: p.annotation for p in sig.parameters.values()}, "return": dict}
        entry.__doc__ = (inspect.cleandoc(body.__doc__ or "") + "\n\nArgs:\n" + "\n".join(
            f"    {f.name}: {f.metadata.get('help', '')}" for f in _fields(cls)))
        return flow(**flow_kwargs)(entry)

    return decorate


def to_parameters(config) -> dict:
    """A config as flow parameters (JSON-compatible values)."""
    return {f.name: copy.deepcopy(getattr(config, f.name)) for f in _fields(type(config))}


def deployment_parameters(cls, **fixed) -> dict:
    """The parameters of one deployment: ``fixed`` values, then every field declared with ``deploy=``."""
    out = dict(fixed)
    for f in _fields(cls):
        d = f.metadata.get("deploy")
        if d is not None and f.name not in out:
            out[f.name] = d.format(**fixed) if isinstance(d, str) else copy.deepcopy(d)
    return out


def absolute(path: str) -> str:
    """A local path (or ``file://`` URL) made absolute: Ray workers do not run in the command's working
    directory. Object-store URIs as given."""
    return str(path) if is_uri(path) else os.path.abspath(os.path.expanduser(local_path(str(path))))


def check_output(cls, name: str, path: str, kind: str) -> None:
    """The output parameter ``name`` can be written: a local ``path`` is a ``kind`` folder or does not exist
    yet, and its nearest existing folder is writable (URIs are not checked here)."""
    if is_uri(path):
        return
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{param(cls, name)}: {out} exists and is not a {kind}")
    parent = next(p for p in (out, *out.parents) if p.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{param(cls, name)}: cannot write to {parent}")


def required_parameters(cls) -> list[str]:
    """Fields without a default (a deployment or a caller must give them)."""
    return [f.name for f in _fields(cls) if _default(f) is inspect.Parameter.empty]
