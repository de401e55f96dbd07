"""Safe reading of untrusted raw files: tar archives, pickles and ``.npy`` files with object arrays.

Raw datasets come from the internet; a researcher's copy may be corrupted or tampered with. Three
kinds of files in the source datasets can execute code or write anywhere when read naively:

* **tar archives** (HOT3D-Clips ``clip-*.tar``, HoloAssist ``AhatDepth_synced.tar``): a member named
  ``/etc/x`` or ``../../x``, a link pointing outside the folder, or a device node.
  :func:`iter_tar_members` yields regular members in memory as ``(name, bytes)``;
  :func:`safe_extract_tar` writes them under a folder. Both refuse the whole archive on the first
  unsafe member (:class:`UnsafeArchiveError`, naming the tar and the member). Links inside the
  archive are materialised as copies of their target; no link is ever created on disk.
* **pickles** (ARCTIC ``egocam.dist.npy`` is a pickled dict): :func:`load_restricted_pickle` uses an
  unpickler that resolves only numpy array/dtype/scalar reconstructors and plain containers; any
  other global (``os.system``, ``builtins.eval``, a class) is refused *before* it is called
  (:class:`UnsafePickleError`, naming the file and the global).
* **.npy with object dtype**: :func:`load_npy` reads the header itself and hands object arrays to the
  restricted unpickler (``np.load(allow_pickle=True)`` is never used).

All errors subclass :class:`egom2p.adapters.SourceError`, so the curation flow quarantines the
sequence with the message.
"""

from __future__ import annotations

import io
import os
import pickle
import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import SourceError

__all__ = ["UnsafeArchiveError", "UnsafePickleError", "iter_tar_members", "safe_extract_tar",
           "load_restricted_pickle", "loads_restricted_pickle", "load_npy", "load_npy_object", "read_npy_header"]


class UnsafeArchiveError(SourceError):
    """A tar archive has a member that would escape its folder (or is not a plain file/folder/link)."""


class UnsafePickleError(SourceError):
    """A pickle references a global outside the admitted numpy/plain-container set."""


# --- tar ------------------------------------------------------------------------------------------


def _check_member_name(tar_path, name: str) -> str:
    """The normalised relative POSIX name of a member, or UnsafeArchiveError."""
    if "\x00" in name:
        raise UnsafeArchiveError(tar_path, f"member {name!r} has a NUL byte in its name")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(tar_path, f"member {name!r} has an absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise UnsafeArchiveError(tar_path, f"member {name!r} has a '..' component (path traversal)")
    norm = posixpath.normpath("/".join(p for p in parts if p not in ("", ".")) or ".")
    return norm


def _resolve_link(tar_path, member: tarfile.TarInfo, name: str) -> str:
    """Normalised archive-relative target of a symlink/hardlink member; refuses targets outside."""
    target = member.linkname
    if target.startswith(("/", "\\")):
        raise UnsafeArchiveError(tar_path, f"member {member.name!r} is a link to absolute path {target!r}")
    base = posixpath.dirname(name) if member.issym() else ""
    joined = posixpath.normpath(posixpath.join(base, target.replace("\\", "/")))
    if joined == ".." or joined.startswith("../"):
        raise UnsafeArchiveError(tar_path, f"member {member.name!r} is a link pointing outside the archive "
                                           f"folder ({target!r})")
    return joined


def _open_tar(tar_path) -> tarfile.TarFile:
    p = Path(tar_path)
    if not p.is_file():
        raise SourceError(p, "tar archive not found")
    try:
        return tarfile.open(p, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise SourceError(p, f"not a readable tar archive ({e})") from e


def _checked_members(tar_path, tf: tarfile.TarFile) -> list[tuple[tarfile.TarInfo, str]]:
    """All members with their normalised names, after checking every one (fail before any output)."""
    out = []
    try:
        members = tf.getmembers()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise SourceError(tar_path, f"corrupt tar archive ({e})") from e
    for m in members:
        name = _check_member_name(tar_path, m.name)
        if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
            raise UnsafeArchiveError(tar_path, f"member {m.name!r} is a device or FIFO, refused")
        if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise UnsafeArchiveError(tar_path, f"member {m.name!r} has unsupported type {m.type!r}")
        if m.issym() or m.islnk():
            _resolve_link(tar_path, m, name)
        out.append((m, name))
    return out


def _member_bytes(tar_path, tf: tarfile.TarFile, by_name: dict, m: tarfile.TarInfo, name: str,
                  depth: int = 0) -> bytes | None:
    """Content of a file member, following in-archive links; None for folders."""
    if depth > 32:
        raise UnsafeArchiveError(tar_path, f"member {m.name!r}: link chain too long")
    if m.isdir():
        return None
    if m.issym() or m.islnk():
        target = _resolve_link(tar_path, m, name)
        if target not in by_name:
            raise UnsafeArchiveError(tar_path, f"member {m.name!r} links to {m.linkname!r}, not in the archive")
        tm = by_name[target]
        return _member_bytes(tar_path, tf, by_name, tm, target, depth + 1)
    f = tf.extractfile(m)
    if f is None:
        raise SourceError(tar_path, f"member {m.name!r} could not be read")
    return f.read()


def iter_tar_members(tar_path) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, bytes)`` for every file member (archive order), after checking all members.

    Names are normalised relative POSIX paths. Folders are skipped; links inside the archive yield
    the content of their target. Raises UnsafeArchiveError (absolute path, ``..``, link outside,
    device) naming the tar and the member.
    """
    with _open_tar(tar_path) as tf:
        checked = _checked_members(tar_path, tf)
        by_name = {name: m for m, name in checked if not m.isdir()}
        for m, name in checked:
            data = _member_bytes(tar_path, tf, by_name, m, name)
            if data is not None:
                yield name, data


def safe_extract_tar(tar_path, dest) -> list[Path]:
    """Extract a tar archive under ``dest`` (created), never writing outside it; the written files.

    Every member is checked before anything is written. Links are written as regular copies of
    their in-archive target; permissions are not taken from the archive.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    written = []
    with _open_tar(tar_path) as tf:
        checked = _checked_members(tar_path, tf)
        by_name = {name: m for m, name in checked if not m.isdir()}
        for m, name in checked:
            if name == ".":
                continue
            out = (root / name)
            # the destination (with any pre-existing folders on the way) must stay inside root
            real_parent = out.parent.resolve() if out.parent.exists() else out.parent
            if os.path.commonpath([str(root), str(real_parent)]) != str(root):
                raise UnsafeArchiveError(tar_path, f"member {m.name!r} would be written outside {dest}")
            if m.isdir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            data = _member_bytes(tar_path, tf, by_name, m, name)
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.is_symlink():
                raise UnsafeArchiveError(tar_path, f"member {m.name!r}: destination {out} is a link")
            out.write_bytes(data)
            written.append(out)
    return written


# --- restricted unpickling ------------------------------------------------------------------------


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The only globals a restricted pickle may reference (numpy reconstructors, dtypes, containers)."""
    from numpy._core import multiarray, numeric  # numpy >= 2

    allowed: dict[tuple[str, str], object] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = multiarray._reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = numeric._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    # numpy >= 1.25 pickles dtypes by their DType class name (numpy.dtypes.Float64DType, ...)
    import numpy.dtypes as npd

    for n in dir(npd):
        obj = getattr(npd, n)
        if isinstance(obj, type) and issubclass(obj, np.dtype):
            allowed[("numpy.dtypes", n)] = obj
    # protocol-2 pickles (Python 2 era) store bytes as _codecs.encode(str, "latin1")
    import _codecs

    allowed[("_codecs", "encode")] = _codecs.encode
    # plain containers / scalars referenced by name in some protocols
    for n, obj in (("dict", dict), ("list", list), ("tuple", tuple), ("set", set), ("frozenset", frozenset),
                   ("str", str), ("int", int), ("float", float), ("bool", bool), ("complex", complex),
                   ("bytes", bytes), ("bytearray", bytearray)):
        allowed[("builtins", n)] = obj
        allowed[("__builtin__", n)] = obj
    allowed[("collections", "OrderedDict")] = __import__("collections").OrderedDict
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source):
        super().__init__(file)
        self._source = source
        self._allowed = _numpy_globals()

    def find_class(self, module, name):  # noqa: D401 - pickle API
        obj = self._allowed.get((module, name))
        if obj is None:
            raise UnsafePickleError(self._source, f"pickle references global {module}.{name}, which is not an "
                                                  "admitted numpy array/dtype/scalar or plain container; refused")
        return obj

    def persistent_load(self, pid):
        raise UnsafePickleError(self._source, f"pickle uses a persistent id ({pid!r}); refused")


def _unpickle(fp, source):
    try:
        return _RestrictedUnpickler(fp, source).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated / corrupt pickles raise many kinds of errors
        raise SourceError(source, f"unreadable pickle ({type(e).__name__}: {e})") from e


def load_restricted_pickle(path):
    """Unpickle a file admitting only numpy arrays/dtypes/scalars and plain containers."""
    p = Path(path)
    if not p.is_file():
        raise SourceError(p, "file not found")
    with open(p, "rb") as fp:
        return _unpickle(fp, p)


def loads_restricted_pickle(data: bytes, source: str = "<bytes>"):
    """:func:`load_restricted_pickle` for bytes already in memory (``source`` names them in errors)."""
    return _unpickle(io.BytesIO(data), source)


# --- .npy ---------------------------------------------------------------------------------------


def read_npy_header(fp) -> tuple[tuple, bool, np.dtype]:
    """(shape, fortran order, dtype) of the ``.npy`` stream ``fp`` (positioned at its start), data not read."""
    fmt = np.lib.format
    version = fmt.read_magic(fp)
    if version == (1, 0):
        return fmt.read_array_header_1_0(fp)
    if version == (2, 0):
        return fmt.read_array_header_2_0(fp)
    from numpy.lib import _format_impl  # (3, 0): utf-8 header; only numpy's private reader takes it

    return _format_impl._read_array_header(fp, version)


def load_npy(path) -> np.ndarray:
    """Read an ``.npy`` file; object arrays (pickled payload) go through the restricted unpickler."""
    p = Path(path)
    if not p.is_file():
        raise SourceError(p, "file not found")
    with open(p, "rb") as fp:
        try:
            shape, fortran, dtype = read_npy_header(fp)
        except Exception as e:
            raise SourceError(p, f"not a valid .npy file ({e})") from e
        if not dtype.hasobject:
            fp.seek(0)
            try:
                return np.load(fp, allow_pickle=False)
            except Exception as e:
                raise SourceError(p, f"unreadable .npy array ({e})") from e
        arr = _unpickle(fp, p)
    if not isinstance(arr, np.ndarray):
        raise SourceError(p, f".npy object payload is a {type(arr).__name__}, expected an ndarray")
    if arr.shape != tuple(shape):
        raise SourceError(p, f".npy payload has shape {arr.shape}, header says {tuple(shape)}")
    return arr


def load_npy_object(path):
    """The Python object stored by ``np.save(path, obj)`` (a 0-d object array), read safely.

    For example ARCTIC's ``egocam.dist.npy`` -> dict of numpy arrays.
    """
    arr = load_npy(path)
    if arr.dtype.hasobject and arr.shape == ():
        return arr.item()
    return arr
