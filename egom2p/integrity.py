"""Artefact integrity and identity: content hashes written last, verified on load; tokenizer identity checks.

Integrity. A directory artefact (a training checkpoint) ends with ``manifest.json``, written after
every other file (atomically, by rename)::

    {"format": "egom2p-manifest/1", "files": {"model.safetensors": {"sha256": ..., "bytes": ...}, ...}}

:func:`verify_file` checks a file against its entry (size first: a truncated file is named as
truncated; then the sha256) and raises :class:`~egom2p.errors.IntegrityError` naming the file.
Tokenizer checkpoints record the sha256 (and size) of ``model.safetensors`` in their
``config.json``, written after the weights; the same check applies. Artefacts written before
manifests existed load with a one-line warning (nothing to verify them against).

Identity. A model is trained on tokens of particular tokenizers, and a token DB holds tokens of
particular tokenizers; both record each tokenizer's identity (kind + checkpoint sha256).
:func:`check_tokenizer_identities` is the one comparison used by ``egom2p predict``, ``egom2p
eval``, ``egom2p-train --init/--resume`` and ``egom2p tokenize`` into an existing DB.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import ForeignArtefactError, IntegrityError, warn

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "egom2p-manifest/1"
ALLOW_FOREIGN_FLAG = "--allow-foreign-tokenizers"

_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 already checked here
_warned: set[str] = set()


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path) -> dict:
    """{"sha256": ..., "bytes": ...} of a file."""
    return {"sha256": file_sha256(path), "bytes": os.path.getsize(path)}


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (readers never see half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_manifest(directory, names) -> dict:
    """Hash ``names`` (files in ``directory``) and write ``manifest.json`` last; returns the manifest."""
    d = Path(directory)
    manifest = {"format": MANIFEST_FORMAT, "files": {n: file_entry(d / n) for n in names}}
    atomic_write_text(d / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def read_manifest(directory) -> dict | None:
    """The manifest of ``directory``, or None when it has none (written before manifests existed)."""
    p = Path(directory) / MANIFEST
    if not p.is_file():
        return None
    try:
        m = json.loads(p.read_text())
        files = m["files"]
        if m.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError(f"format {m.get('format')!r}")
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise IntegrityError(f"{p}: damaged manifest ({e})") from e
    return m


def verify_file(path, expected: dict, recorded_in: str = MANIFEST) -> None:
    """Raise IntegrityError naming ``path`` when it is missing, truncated or its sha256 differs from ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise IntegrityError(f"{path}: missing (listed in {recorded_in})")
    st = path.stat()
    size = expected.get("bytes")
    if size is not None and st.st_size != int(size):
        what = "truncated" if st.st_size < int(size) else "longer than written"
        raise IntegrityError(f"{path}: damaged, {what}: {st.st_size} bytes, {recorded_in} records {size}")
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    want = expected.get("sha256")
    if want is None or _verified.get(key) == want:
        return
    got = file_sha256(path)
    if got != want:
        raise IntegrityError(f"{path}: damaged: content sha256 {got} differs from {want} recorded in {recorded_in}")
    _verified[key] = got


def verify_in_manifest(directory, name: str) -> bool:
    """Verify ``directory/name`` against the directory's manifest; False (and a warning) without a manifest."""
    d = Path(directory)
    m = read_manifest(d)
    if m is None:
        warn_unverified(d, f"no {MANIFEST}")
        return False
    if name not in m["files"]:
        raise IntegrityError(f"{d / name}: not listed in {d / MANIFEST} (files: {sorted(m['files'])})")
    verify_file(d / name, m["files"][name], recorded_in=str(d / MANIFEST))
    return True


def verify_all(directory) -> bool:
    """Verify every file listed in the manifest of ``directory``; False (and a warning) without one."""
    d = Path(directory)
    m = read_manifest(d)
    if m is None:
        warn_unverified(d, f"no {MANIFEST}")
        return False
    for name, entry in sorted(m["files"].items()):
        verify_file(d / name, entry, recorded_in=str(d / MANIFEST))
    return True


def warn_unverified(path, why: str) -> None:
    """One warning line per artefact written before content hashes were recorded."""
    key = os.fspath(path)
    if key not in _warned:
        _warned.add(key)
        warn(f"warning: {key}: {why}, written before integrity hashes were recorded; loading it unverified")


# --- identity ----------------------------------------------------------------------------------------


def _is_digest(x) -> bool:
    return isinstance(x, str) and len(x) == 64 and all(c in "0123456789abcdef" for c in x)


def check_tokenizer_identities(recorded: dict, actual: dict, *, recorded_in: str, actual_in: str,
                               allow: bool = False, override: str | None = ALLOW_FOREIGN_FLAG) -> list[str]:
    """Refuse tokenizers whose checkpoint sha256 differs from the one recorded with an artefact.

    ``recorded``: {modality: identity} stored with the artefact (a checkpoint's token DB, a token DB's
    metadata); ``actual``: {modality: identity} of the tokenizers at hand (identity: {"kind", "sha256",
    ...}). Modalities present on both sides with a sha256 digest are compared (an identity recorded
    without one, e.g. tokens imported from the official release, cannot be checked). A mismatch raises
    :class:`ForeignArtefactError` (one line naming both hashes and ``override``: the flag that accepts
    them deliberately, or, when it is no flag, the way to go instead), or with ``allow=True`` warns on stderr.
    Returns the mismatches found.
    """
    mismatches, names = [], []
    for m in sorted(set(recorded) & set(actual)):
        want, got = (recorded[m] or {}).get("sha256"), (actual[m] or {}).get("sha256")
        if _is_digest(want) and _is_digest(got) and want != got:
            names.append(m)
            mismatches.append(f"the {m} tokenizer in {actual_in} has sha256 {got}; {recorded_in} expects "
                              f"{(recorded[m] or {}).get('kind')} sha256 {want}")
    if not mismatches:
        return []
    text = mismatches[0] + (f" (also {', '.join(names[1:])})" if len(names) > 1 else "")
    if allow:
        warn(f"warning: {text}; used anyway ({override})")
        return mismatches
    hint = "" if not override else (f"; pass {override} to use them anyway" if override.startswith("--")
                                    else f"; use {override}")
    raise ForeignArtefactError(f"foreign tokenizer: {text}{hint}")
