"""Where tables and run files live: local paths or object-store URIs, and the options to reach them.

Every output of curation and tokenization (clips tables, token DBs, quarantine and summary files)
may be a local path or an object-store URI (``s3://bucket/prefix``, ``gs://``, ``az://``); raw
input stays POSIX. Storage options (endpoint, credentials, region) for URIs come from, in order of
precedence:

1. options given explicitly (a run's typed config: ``storage_options={...}``);
2. the ``EGOM2P_STORAGE_OPTIONS`` environment variable (a JSON object of Lance/object_store keys);
3. the standard AWS variables, which Lance also reads itself: ``AWS_ACCESS_KEY_ID``,
   ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT``
   (an S3-compatible server such as MinIO or moto), ``AWS_ALLOW_HTTP``.

Options travel inside the stage objects that the runner ships to Ray workers, so a worker on
another node needs no environment of its own. Small run files (summaries, quarantine records) are
written with :mod:`pyarrow.fs`: one PUT per object on object stores (atomic there), a temporary
file and a rename locally.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlparse

_AWS_ENV = {  # environment variable -> Lance / object_store storage option
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
    "AWS_REGION": "aws_region",
    "AWS_ENDPOINT": "aws_endpoint",
    "AWS_ALLOW_HTTP": "allow_http",
}


def is_uri(path: str | os.PathLike) -> bool:
    """True for an object-store URI (``s3://...``); False for a local path (``file://`` counts as local)."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def local_path(path: str | os.PathLike) -> str:
    text = os.fspath(path)
    return text[len("file://"):] if text.startswith("file://") else text


def storage_options(path: str | os.PathLike, explicit: dict | None = None) -> dict | None:
    """Storage options for ``path`` (None for a local path): explicit, then EGOM2P_STORAGE_OPTIONS, then AWS_*."""
    if not is_uri(path):
        return None
    opts: dict[str, str] = {}
    for env, key in _AWS_ENV.items():
        if os.environ.get(env):
            opts[key] = os.environ[env]
    raw = os.environ.get("EGOM2P_STORAGE_OPTIONS")
    if raw:
        try:
            extra = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"EGOM2P_STORAGE_OPTIONS is not a JSON object: {e}") from None
        if not isinstance(extra, dict):
            raise ValueError("EGOM2P_STORAGE_OPTIONS must be a JSON object of storage options")
        opts.update({str(k): str(v) for k, v in extra.items()})
    opts.update({str(k): str(v) for k, v in (explicit or {}).items()})
    return opts


def join(base: str | os.PathLike, *names: str) -> str:
    """``base/name/...`` for a local path or a URI."""
    text = os.fspath(base)
    if is_uri(text):
        return "/".join([text.rstrip("/"), *[n.strip("/") for n in names]])
    return str(Path(local_path(text)).joinpath(*names))


def display(path: str | os.PathLike) -> str:
    """A path as written in lineage and summaries: absolute for local paths, unchanged for URIs."""
    text = os.fspath(path)
    return text if is_uri(text) else os.path.abspath(local_path(text))


def filesystem(path: str | os.PathLike, options: dict | None = None):
    """(pyarrow FileSystem, path inside it) for ``path``."""
    import pyarrow.fs as pafs

    text = os.fspath(path)
    if not is_uri(text):
        return pafs.LocalFileSystem(), os.path.abspath(local_path(text))
    url = urlparse(text)
    opts = storage_options(text, options) or {}
    if url.scheme in ("s3", "s3a"):
        kw = {}
        if opts.get("aws_access_key_id"):
            kw.update(access_key=opts["aws_access_key_id"], secret_key=opts.get("aws_secret_access_key"))
        if opts.get("aws_session_token"):
            kw["session_token"] = opts["aws_session_token"]
        if opts.get("aws_region"):
            kw["region"] = opts["aws_region"]
        endpoint = opts.get("aws_endpoint")
        if endpoint:
            ep = urlparse(endpoint)
            kw["endpoint_override"] = ep.netloc or ep.path
            kw["scheme"] = ep.scheme or "https"
        return pafs.S3FileSystem(**kw), f"{url.netloc}{url.path}"
    fs, inner = pafs.FileSystem.from_uri(text)
    return fs, inner


def exists(path: str | os.PathLike, options: dict | None = None) -> bool:
    import pyarrow.fs as pafs

    fs, inner = filesystem(path, options)
    return fs.get_file_info(inner).type != pafs.FileType.NotFound


def write_bytes(path: str | os.PathLike, data: bytes, options: dict | None = None) -> None:
    """Write a whole file so that readers see the old or the new content, never half of it."""
    text = os.fspath(path)
    if not is_uri(text):
        p = Path(local_path(text))
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        return
    fs, inner = filesystem(text, options)
    with fs.open_output_stream(inner) as f:  # one PUT: atomic on object stores
        f.write(data)


def read_bytes(path: str | os.PathLike, options: dict | None = None) -> bytes:
    fs, inner = filesystem(path, options)
    with fs.open_input_stream(inner) as f:
        return f.read()


def list_files(prefix: str | os.PathLike, options: dict | None = None) -> list[str]:
    """Files directly under the folder ``prefix`` (full paths or URIs, sorted); empty if it does not exist."""
    import pyarrow.fs as pafs

    text = os.fspath(prefix)
    fs, inner = filesystem(text, options)
    infos = fs.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
    return [join(text, n) for n in names]


def makedirs(path: str | os.PathLike) -> None:
    """Create a local folder (object stores need none)."""
    if not is_uri(path):
        Path(local_path(path)).mkdir(parents=True, exist_ok=True)
