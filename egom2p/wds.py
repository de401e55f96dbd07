"""Token shards of the official EgoM2P release (WebDataset tars) <-> the token DB.

The official release (GitHub lgen-sudo/EgoM2P, a mirror of ligengen/EgoM2P) trains from
pre-computed tokens stored as per-modality WebDataset shards. What this module relies on, and
where the release says it:

* **Layout** (``README_DATA.md``): ``root/<modality>/<dataset>/shard-NNNNNN.tar``, one modality
  per tar, about 1000 samples per tar, shards numbered so brace expansion lists them; a sample is
  aligned across modalities *only* by its file name ("filenames are identical for all modalities,
  except for the modality name and file extensions"). The training config
  (``cfgs/default/egom2p/data/ego/main/mix_mod4_all2all_2048.yaml``) reads
  ``.../main_model_token/[rgb,depth,cam,gaze]/<dataset>/token/shard-{000000..000040}.tar``: six
  digits, and the shards may sit in a ``token/`` sub-folder (where ``tokenize_script/cam.sh`` and
  ``gaze.sh`` let ``run_training_vqvae.py --tokenize`` write them).
* **Modality names** (``egom2p/data/modality_info.py``): the model's modalities are ``tok_rgb``,
  ``tok_depth``, ``tok_gaze``, ``tok_cam``; their ``path`` (the folder name) is ``rgb``, ``depth``,
  ``gaze``, ``cam``. ``tok_rgb``/``tok_depth``: vocabulary 64000, 5120 tokens = 5x32x32 (Cosmos
  DV4x8x8 on 256x256); ``tok_gaze``/``tok_cam``: vocabulary 256, 30 tokens. These are the sizes of
  egom2p's ``base`` registry, which every imported DB uses.
* **Alignment** (``egom2p/data/unified_datasets.py``, ``multi_tarfile_samples``): the loader opens
  shard ``N`` of every modality of a dataset and walks them *in lockstep*, raising "Divergence
  detected" when the keys at one position differ. Keys are WebDataset keys: the member path up to
  the first dot of its base name. So shard ``N`` of each modality must hold the same keys in the
  same order.
* **Per-sample file** (``unified_datasets.py`` ``wds_decoder`` and ``tok_to_int64``;
  ``cosmos_tokenizer/video_cli.py``; ``run_training_vqvae.py`` ``tokenize``;
  ``gen_aligned_training_data.py`` ``tar_holo``): one member ``<key>.npz`` per sample, written by
  ``np.savez_compressed`` with a single positional array, so the array is ``arr_0``; integer token
  ids, converted to int64 by the loader. Video tokens come from the Cosmos DV encoder as
  ``[t, h, w]`` = ``[5, 32, 32]`` (``cosmos_tokenizer/video_lib.py``: "indices, Bx(t)x(h)x(w)");
  gaze and camera tokens from the VQ-VAE's ``tokenize`` as ``[30]``. Sample names follow
  ``<sequence>_<clip index>`` (``gen_aligned_training_data.py``: ``f"{video_name}_{i}.npy"``).

What egom2p adds on reading (:func:`import_shards`): tars are read with
:func:`egom2p.safeio.iter_tar_members` (a member escaping its folder, a link outside, a device
node refuses the whole shard); ``.npz``/``.npy`` payloads are parsed with ``allow_pickle=False``
after checking the array header (integer dtype, the registry's token count) before any data is
read, and an archive holding anything but ``arr_0`` is refused. Never unpickled.

Missing-key policy (report and skip, never misalign): within shard ``N`` of a dataset, a key that
some of the dataset's modalities lack is skipped and reported (the release's samples carry every
modality of their dataset); a shard whose shared keys come in a different order in different
modalities, or repeats a key, is *misaligned*: it is reported and none of it is imported. A sample
whose tokens are unreadable, of the wrong size or out of the vocabulary is skipped and reported.
The DB's lineage names every imported shard with its sha256.

Writing (:func:`export_shards`): the same layout, ``root/<modality>/<dataset>/shard-NNNNNN.tar``
with ``<key>.npz`` (``arr_0``: int32 ``[5, 32, 32]`` video, int64 ``[30]`` gaze/cam, as the
release's tokenizers write them), the same keys in the same order in every modality of a dataset,
so the official loader reads it with ``data_path: ROOT/[rgb,depth,cam]/<dataset>/shard-{...}.tar``.
``root/egom2p-wds.json`` (not a tar, so invisible to that loader) keeps each key's clip id,
sequence and split, so exporting and importing again gives back the same clip ids.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import re
import tarfile
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import EgoM2PError
from .modalities import MODALITIES, Registry, get_registry

SIDECAR = "egom2p-wds.json"
SHARD_SIZE = 1000  # samples per tar in the release (gen_aligned_training_data.py NUM_FILES_PER_TAR)
TOKEN_EXTS = ("npz", "npy")
# release folder name (and the model's modality name) -> egom2p modality
FOLDERS = {**{m: m for m in MODALITIES}, **{f"tok_{m}": m for m in MODALITIES}}
EXPORT_DTYPES = {"rgb": np.int32, "depth": np.int32, "gaze": np.int64, "cam": np.int64}
_UNKNOWN_SHA = "unknown (official EgoM2P release)"  # the release publishes no checkpoint hashes with its shards
OFFICIAL_TOKENIZERS = {
    "rgb": {"kind": "cosmos", "name": "Cosmos-Tokenizer-DV4x8x8"},
    "depth": {"kind": "cosmos", "name": "Cosmos-Tokenizer-DV4x8x8"},
    "gaze": {"kind": "vqvae", "name": "EgoM2P gaze VQ-VAE (Transformer_gaze_256_frame_60_ds2)"},
    "cam": {"kind": "vqvae", "name": "EgoM2P camera VQ-VAE (Transformer_cam_traj_256_f60_cano_norm_ds2_slr3)"},
}


def official_tokenizer(modality: str) -> dict:
    """The tokenizer identity recorded for tokens imported from the release (no checkpoint hash known)."""
    return {**OFFICIAL_TOKENIZERS[modality], "source": "official EgoM2P release shards", "sha256": _UNKNOWN_SHA}


class WdsError(EgoM2PError, RuntimeError):
    """The shard root or the output cannot be used; the message names the path and the problem."""


@dataclass
class Issue:
    """One thing reported (and skipped) during an import or export."""

    kind: str  # missing_key | misaligned_shard | unsafe_shard | bad_sample | ignored_member | ignored_path | skipped_clip
    where: str  # shard or member path, or clip id
    message: str

    def line(self) -> str:
        return f"{self.kind}: {self.where}: {self.message}"


@dataclass
class Report:
    """What an import or export did: counts per dataset and every issue."""

    samples: dict[str, int] = field(default_factory=dict)  # dataset -> samples written
    shards: dict[str, int] = field(default_factory=dict)  # dataset -> shard groups imported / written
    issues: list[Issue] = field(default_factory=list)
    db_versions: list[int] = field(default_factory=list)

    def add(self, kind: str, where, message: str) -> None:
        self.issues.append(Issue(kind, str(where), message))

    def count(self, kind: str) -> int:
        return sum(1 for i in self.issues if i.kind == kind)

    def to_dict(self) -> dict:
        return {"samples": self.samples, "shards": self.shards, "db_versions": self.db_versions,
                "issues": [i.__dict__ for i in self.issues],
                "counts": {k: self.count(k) for k in sorted({i.kind for i in self.issues})}}


# --- reading one sample ---------------------------------------------------------------------------


class _BadSample(ValueError):
    pass


def _read_npy_header(f, where: str, n_tokens: int):
    from .safeio import read_npy_header

    try:
        shape, fortran, dtype = read_npy_header(f)
    except Exception as e:
        raise _BadSample(f"not a valid .npy array ({e})") from e
    if dtype.hasobject or dtype.kind not in "iu":
        raise _BadSample(f"token array has dtype {dtype}, expected integers (object arrays are never unpickled)")
    size = int(np.prod(shape)) if shape else 1
    if size != n_tokens:
        raise _BadSample(f"token array has shape {tuple(shape)} ({size} tokens), the registry says {n_tokens}")
    return shape, fortran, dtype


def read_token_array(data: bytes, ext: str, n_tokens: int, vocab: int, where: str = "<bytes>") -> np.ndarray:
    """Token ids (uint16 [n_tokens], row-major) of one ``.npz`` (``arr_0`` only) or ``.npy`` payload.

    The header is checked (integer dtype, ``n_tokens`` elements) before the data is read;
    ``allow_pickle`` is never set. Raises ``ValueError`` naming the problem.
    """
    try:
        if ext == "npy":
            f = io.BytesIO(data)
            _read_npy_header(f, where, n_tokens)
            f.seek(0)
            arr = np.lib.format.read_array(f, allow_pickle=False)
        elif ext == "npz":
            try:
                zf = zipfile.ZipFile(io.BytesIO(data))
            except zipfile.BadZipFile as e:
                raise _BadSample(f"not a valid .npz archive ({e})") from e
            with zf:
                names = zf.namelist()
                if names != ["arr_0.npy"]:
                    raise _BadSample(f".npz holds {names[:5]}; expected exactly one array arr_0")
                with zf.open("arr_0.npy") as f:
                    _read_npy_header(f, where, n_tokens)
                with zf.open("arr_0.npy") as f:
                    arr = np.lib.format.read_array(f, allow_pickle=False)
        else:
            raise _BadSample(f"unsupported token file extension .{ext} (expected .npz or .npy)")
    except _BadSample:
        raise
    except Exception as e:  # truncated zip members, short reads, ...
        raise _BadSample(f"unreadable token array ({type(e).__name__}: {str(e)[:200]})") from e
    flat = np.asarray(arr).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= vocab):
        raise _BadSample(f"token ids outside [0, {vocab}) ({int(flat.min())}..{int(flat.max())})")
    return flat.astype(np.uint16)


def split_key(member: str) -> tuple[str, str] | None:
    """WebDataset's (key, extension) of a member path: the key ends at the first dot of the base name."""
    d, _, base = member.rpartition("/")
    if base.startswith(".") or "." not in base:
        return None
    stem, ext = base.split(".", 1)
    return (f"{d}/{stem}" if d else stem), ext


def _read_shard(tar_path: Path, report: Report) -> list[tuple[str, str, bytes]] | None:
    """[(key, ext, payload)] in archive order; None (reported) when the shard is unsafe or unreadable."""
    from .adapters.base import SourceError
    from .safeio import iter_tar_members

    out = []
    try:
        for name, data in iter_tar_members(tar_path):
            kx = split_key(name)
            if kx is None or kx[1] not in TOKEN_EXTS:
                report.add("ignored_member", f"{tar_path}:{name}", "not a .npz/.npy token file; ignored")
                continue
            out.append((kx[0], kx[1], data))
    except SourceError as e:
        report.add("unsafe_shard", tar_path, f"{e}; shard not imported")
        return None
    return out


# --- discovering the shards -----------------------------------------------------------------------


def _shard_order(rel: str):
    nums = re.findall(r"\d+", rel)
    return (rel.rsplit("/", 1)[0] if "/" in rel else "", int(nums[-1]) if nums else -1, rel)


def discover(root, report: Report | None = None, datasets: Iterable[str] | None = None,
             modalities: Iterable[str] | None = None) -> dict[str, dict[str, dict[str, Path]]]:
    """{dataset: {shard (path relative to the dataset folder): {modality: tar path}}} under ``root``.

    Modality folders are ``rgb|depth|gaze|cam`` (or the model's ``tok_*`` names); anything else at
    the top level is reported and ignored. Shards are ``*.tar`` files in the dataset folder or below
    it (the release's ``token/`` sub-folder); the same relative path in two modality folders is the
    same shard.
    """
    root = Path(root)
    if not root.is_dir():
        raise WdsError(f"{root}: shard root not found (expected ROOT/<modality>/<dataset>/shard-NNNNNN.tar)")
    want_ds = set(datasets) if datasets else None
    want_mod = set(modalities) if modalities else None
    found: dict[str, dict[str, dict[str, Path]]] = {}
    for mdir in sorted(p for p in root.iterdir() if p.is_dir()):
        m = FOLDERS.get(mdir.name)
        if m is None:
            if report is not None:
                report.add("ignored_path", mdir, f"not a modality folder ({', '.join(MODALITIES)}); ignored")
            continue
        if want_mod is not None and m not in want_mod:
            continue
        for ddir in sorted(p for p in mdir.iterdir() if p.is_dir()):
            if want_ds is not None and ddir.name not in want_ds:
                continue
            for tar in sorted(ddir.rglob("*.tar")):
                rel = tar.relative_to(ddir).as_posix()
                group = found.setdefault(ddir.name, {}).setdefault(rel, {})
                if m in group:
                    raise WdsError(f"{tar}: modality {m} has two folders at {root} "
                                   f"({group[m].relative_to(root).parts[0]} and {mdir.name}); keep one")
                group[m] = tar
    return {d: dict(sorted(g.items(), key=lambda kv: _shard_order(kv[0]))) for d, g in sorted(found.items())}


# --- import -----------------------------------------------------------------------------------------


def _sequence_of(key: str) -> str:
    """The release names samples ``<sequence>_<clip index>``; without such a suffix the key is the sequence."""
    base = key.rsplit("/", 1)[-1]
    m = re.fullmatch(r"(.+?)[_-]\d+", base)
    return m.group(1) if m else base


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _align(dataset: str, shard: str, per_mod: dict[str, list[tuple[str, str, bytes]]], mods: Sequence[str],
           report: Report) -> list[str] | None:
    """Keys to import from one shard group (in order), or None when the group is misaligned (reported)."""
    orders = {}
    for m in mods:
        keys = [k for k, _, _ in per_mod.get(m, [])]
        dup = {k for k, n in Counter(keys).items() if n > 1}
        if dup:
            report.add("misaligned_shard", f"{dataset}/{shard}",
                       f"modality {m} repeats key(s) {sorted(dup)[:3]}; shard not imported")
            return None
        orders[m] = keys
    common = set.intersection(*(set(v) for v in orders.values())) if orders else set()
    ref = None
    for m in mods:
        seq = [k for k in orders[m] if k in common]
        if ref is None:
            ref = (m, seq)
        elif seq != ref[1]:
            pos = next(i for i, (a, b) in enumerate(zip(ref[1], seq)) if a != b)
            report.add("misaligned_shard", f"{dataset}/{shard}",
                       f"keys out of step: sample {pos} is {ref[1][pos]!r} in {ref[0]} but {seq[pos]!r} in {m} "
                       "(the release's loader walks modalities in lockstep); shard not imported")
            return None
    reported, sets = set(), {m: set(v) for m, v in orders.items()}
    for m in mods:
        for k in orders[m]:
            if k not in common and k not in reported:
                reported.add(k)
                have = [o for o in mods if k in sets[o]]
                lacking = [o for o in mods if o not in have]
                report.add("missing_key", f"{dataset}/{shard}:{k}",
                           f"in {', '.join(have)} but missing in {', '.join(lacking)}; sample skipped")
    return ref[1] if ref else []


def _read_sidecar(root: Path, report: Report) -> dict:
    p = root / SIDECAR
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
        return {d: dict(v) for d, v in data.get("datasets", {}).items()}
    except (OSError, ValueError, AttributeError, TypeError) as e:
        report.add("ignored_path", p, f"unreadable egom2p sidecar ({e}); clip ids derived from the keys")
        return {}


def import_shards(root, out, *, split: str = "train", datasets: Iterable[str] | None = None,
                  modalities: Iterable[str] | None = None, batch_rows: int = 20000,
                  registry: Registry | None = None) -> Report:
    """Read the release's shards under ``root`` into the token DB ``out`` (created or appended to).

    Rows are written through :func:`egom2p.tokendb.write_tokens` in batches of about
    ``batch_rows`` clips (one Lance version each; lineage lists every shard of the batch with its
    sha256). Clip ids are ``<dataset>/<key>`` (or those recorded by :func:`export_shards`);
    re-importing skips clips already in the DB. Returns the :class:`Report`.
    """
    from .tokendb import wds_source, write_tokens

    root = Path(root)
    registry = registry or get_registry("base")
    report = Report()
    found = discover(root, report, datasets, modalities)
    if not found:
        raise WdsError(f"{root}: no shards found (expected ROOT/<modality>/<dataset>/[token/]shard-NNNNNN.tar "
                       f"with modality folders {', '.join(MODALITIES)})")
    sidecar = _read_sidecar(root, report)
    pending: list[dict] = []
    pending_shards: list[dict] = []

    def flush():
        if not pending:
            return
        present = {m for r in pending for m in MODALITIES if r.get(f"tok_{m}") is not None}
        # each row's lineage columns name its shard (tar paths and sha256s, see tokendb.wds_source)
        v = write_tokens(out, pending, registry=registry, tokenizers={m: official_tokenizer(m) for m in present},
                         commit_message=f"import-wds {root}")
        if v is not None:
            report.db_versions.append(int(v))
        pending.clear()
        pending_shards.clear()

    for dataset, groups in found.items():
        mods = [m for m in MODALITIES if any(m in g for g in groups.values())]
        ids = sidecar.get(dataset, {})
        for shard, tars in groups.items():
            where = f"{dataset}/{shard}"
            per_mod = {}
            for m in mods:
                if m not in tars:
                    continue
                got = _read_shard(tars[m], report)
                if got is None:
                    per_mod = None
                    break
                per_mod[m] = got
            if per_mod is None:
                continue
            for m in mods:
                if m not in tars:
                    per_mod[m] = []
                    report.add("missing_key", f"{dataset}/{shard}",
                               f"no {m} shard (other modalities of {dataset} have one); its samples are skipped")
            keys = _align(dataset, shard, per_mod, mods, report)
            if keys is None:
                continue
            payload = {m: {k: (ext, data) for k, ext, data in per_mod[m]} for m in mods}
            first = len(pending)
            rows = 0
            for key in keys:
                row = {}
                try:
                    for m in mods:
                        ext, data = payload[m][key]
                        spec = registry[m]
                        row[f"tok_{m}"] = read_token_array(data, ext, spec.num_tokens, spec.vocab_size,
                                                           f"{tars[m]}:{key}.{ext}")
                except _BadSample as e:
                    report.add("bad_sample", f"{tars[m]}:{key}.{ext}", f"{e}; sample skipped")
                    continue
                info = ids.get(key, {})
                row.update(clip_id=info.get("clip_id", f"{dataset}/{key}"), dataset=dataset,
                           sequence=info.get("sequence", _sequence_of(key)), split=info.get("split", split))
                pending.append(row)
                rows += 1
            report.samples[dataset] = report.samples.get(dataset, 0) + rows
            report.shards[dataset] = report.shards.get(dataset, 0) + 1
            info = {"dataset": dataset, "shard": shard, "samples": rows,
                    "tars": {m: {"path": tars[m].relative_to(root).as_posix(), "sha256": _sha256(tars[m])}
                             for m in mods if m in tars}}
            pending_shards.append(info)
            src = wds_source(root.resolve(), info)
            for r in pending[first:]:
                r["src_clips"], r["src_clips_version"] = src, None
            if len(pending) >= batch_rows:
                flush()
    flush()
    return report


# --- export -----------------------------------------------------------------------------------------


def _key_of(clip_id: str, dataset: str) -> str:
    """A WebDataset key for a clip: no dots (the key ends at the first dot) and no folders."""
    rest = clip_id[len(dataset) + 1:] if clip_id.startswith(dataset + "/") else clip_id
    return re.sub(r"[^A-Za-z0-9_-]", "_", rest) or "clip"


def _npz_bytes(tokens: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, tokens)  # one positional array -> arr_0, as the release writes it
    return buf.getvalue()


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    tmp = path.with_name(path.name + ".partial")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tf.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)


def export_shards(db_path, out, *, version=None, datasets: Iterable[str] | None = None,
                  modalities: Iterable[str] | None = None, split: str | None = None,
                  shard_size: int = SHARD_SIZE) -> Report:
    """Write the token DB as the release's shards: ``out/<modality>/<dataset>/shard-NNNNNN.tar``.

    Per dataset the exported modalities are those its clips have (or ``modalities``); a clip
    lacking one of them is skipped and reported, so every shard of a dataset holds the same keys
    in the same order in each modality folder. The DB must use the ``base`` registry (the sizes
    the official model reads). ``out`` must not exist or be empty.
    """
    from .tokendb import open_token_db

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WdsError(f"{out}: output exists and is not an empty folder; not writing shards into it")
    if shard_size < 1:
        raise WdsError(f"shard size must be >= 1, got {shard_size}")
    db = open_token_db(db_path, version)
    try:
        db.registry.check_compatible(get_registry("base"), what="the official EgoM2P tokenizers (base)")
    except ValueError as e:
        raise WdsError(f"{db.path}: {e}; the release's model reads base-size tokens only") from e
    report = Report()
    idx = db.index().to_pydict()
    want_ds = set(datasets) if datasets else None
    want_mod = [m for m in MODALITIES if (modalities is None or m in set(modalities))]
    by_ds: dict[str, list[int]] = {}
    for i, (cid, ds, sp) in enumerate(zip(idx["clip_id"], idx["dataset"], idx["split"])):
        if (want_ds is None or ds in want_ds) and (split is None or sp == split):
            by_ds.setdefault(ds, []).append(i)
    sidecar = {"format": "egom2p-wds/1", "source_db": os.fspath(db.path), "db_version": db.version,
               "registry": db.registry.snapshot(), "tokenizers": db.tokenizers,
               "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "datasets": {}}
    for ds, rows in sorted(by_ds.items()):
        rows.sort(key=lambda i: idx["clip_id"][i])
        mods = [m for m in want_mod if any(idx[f"has_{m}"][i] for i in rows)]
        if not mods:
            report.add("skipped_clip", ds, "no clip of this dataset has any of the exported modalities")
            continue
        keep = []
        for i in rows:
            lacking = [m for m in mods if not idx[f"has_{m}"][i]]
            if lacking:
                report.add("skipped_clip", idx["clip_id"][i], f"lacks {', '.join(lacking)} (other clips of {ds} "
                                                              "have it; the release's shards need every modality)")
            else:
                keep.append(i)
        keys, used = {}, set()
        for i in keep:
            k = base = _key_of(idx["clip_id"][i], ds)
            n = 1
            while k in used:
                n += 1
                k = f"{base}_{n}"
            used.add(k)
            keys[i] = k
        ds_side = sidecar["datasets"].setdefault(ds, {})
        for s, start in enumerate(range(0, len(keep), shard_size)):
            chunk = keep[start:start + shard_size]
            toks = {m: db.tokens(chunk, m)[0] for m in mods}
            for m in mods:
                spec = db.registry[m]
                members = [(f"{keys[i]}.npz", _npz_bytes(toks[m][j].astype(EXPORT_DTYPES[m]).reshape(spec.token_grid)))
                           for j, i in enumerate(chunk)]
                d = out / m / ds
                d.mkdir(parents=True, exist_ok=True)
                _write_tar(d / f"shard-{s:06d}.tar", members)
            for i in chunk:
                ds_side[keys[i]] = {"clip_id": idx["clip_id"][i], "sequence": idx["sequence"][i],
                                    "split": idx["split"][i]}
            report.shards[ds] = report.shards.get(ds, 0) + 1
        report.samples[ds] = len(keep)
    out.mkdir(parents=True, exist_ok=True)
    (out / SIDECAR).write_text(json.dumps(sidecar, indent=1, sort_keys=True))
    return report
