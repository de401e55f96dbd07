"""The official EgoM2P release's WebDataset token shards <-> the token DB (egom2p.wds, `egom2p db *-wds`).

The shards are made here the way the release's scripts make them: per sample a ``<name>.npz``
written by ``np.savez_compressed(path, tokens)`` (the array is ``arr_0``; int32 [5, 32, 32] video
tokens as the Cosmos CLI writes, int64 [30] gaze/camera tokens as the VQ-VAE's ``tokenize``), then
tarred 1 shard at a time with ``arcname`` = the file name, under ``ROOT/<modality>/<dataset>/``
(``token/`` sub-folder for one dataset, as the release's training config reads them).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from egom2p import wds
from egom2p.cli import main as cli
from egom2p.modalities import get_registry
from egom2p.tokendb import open_token_db

REG = get_registry("base")
GRIDS = {"rgb": (5, 32, 32), "depth": (5, 32, 32), "gaze": (30,), "cam": (30,)}
DTYPES = {"rgb": np.int32, "depth": np.int32, "gaze": np.int64, "cam": np.int64}


def sample_tokens(rng, m):
    return rng.integers(0, REG[m].vocab_size, GRIDS[m]).astype(DTYPES[m])


def write_official_shards(root: Path, dataset: str, mods, names, shard_size: int, subdir: str = "",
                          seed: int = 0) -> dict:
    """Release-style shards of ``names`` for ``mods``; returns {name: {modality: tokens}}."""
    rng = np.random.default_rng(seed)
    truth = {n: {m: sample_tokens(rng, m) for m in mods} for n in names}
    for m in mods:
        folder = root / m / dataset / subdir
        files = folder / "files"
        files.mkdir(parents=True, exist_ok=True)
        for n in names:
            np.savez_compressed(files / n, truth[n][m])  # -> files/<n>.npz with arr_0
        for s, start in enumerate(range(0, len(names), shard_size)):
            with tarfile.open(folder / f"shard-{s:06d}.tar", "w") as tar:
                for n in names[start:start + shard_size]:
                    tar.add(files / f"{n}.npz", arcname=f"{n}.npz")
        for f in files.iterdir():
            f.unlink()
        files.rmdir()
    return truth


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "main_model_token"
    egogen = [f"walk{s}_{i}" for s in range(2) for i in range(3)]  # 6 samples, 2 per shard -> 3 shards
    egoexo = [f"take{i:02d}_0" for i in range(3)]
    truth = {"egogen": write_official_shards(root, "egogen", ["rgb", "depth", "cam"], egogen, 2, "token"),
             "egoexo": write_official_shards(root, "egoexo", ["rgb", "gaze", "cam"], egoexo, 2, seed=1)}
    return root, truth


def db_tokens(db) -> dict:
    """{clip_id: {modality: uint16 tokens}} of every row."""
    idx = db.index().to_pydict()
    rows = list(range(len(idx["clip_id"])))
    out = {c: {} for c in idx["clip_id"]}
    for m in ("rgb", "depth", "gaze", "cam"):
        toks, present = db.tokens(rows, m)
        for i, c in enumerate(idx["clip_id"]):
            if present[i]:
                out[c][m] = toks[i]
    return out


def test_import_reads_official_layout_into_a_base_db(tmp_path, release):
    root, truth = release
    report = wds.import_shards(root, tmp_path / "tokens" / "rel.lance")
    assert report.issues == []
    assert report.samples == {"egoexo": 3, "egogen": 6} and report.shards == {"egoexo": 2, "egogen": 3}
    db = open_token_db(tmp_path / "tokens" / "rel.lance")
    assert db.registry.snapshot() == REG.snapshot()
    got = db_tokens(db)
    assert len(got) == 9
    for ds, samples in truth.items():
        for name, mods in samples.items():
            row = got[f"{ds}/{name}"]
            assert sorted(row) == sorted(mods)  # the dataset's modalities only; the others are null
            for m, t in mods.items():
                assert np.array_equal(row[m], t.reshape(-1))
    idx = db.index().to_pydict()
    i = idx["clip_id"].index("egogen/walk1_2")
    assert (idx["dataset"][i], idx["sequence"][i], idx["split"][i]) == ("egogen", "walk1", "train")
    # lineage names every source shard with its sha256; tokenizers are the release's (base sizes)
    shards = [s for e in db.lineage for s in e["shards"]]
    assert {s["tars"]["rgb"]["path"] for s in shards if s["dataset"] == "egogen"} == {
        f"rgb/egogen/token/shard-{k:06d}.tar" for k in range(3)}
    assert all(len(t["sha256"]) == 64 for s in shards for t in s["tars"].values())
    assert db.tokenizers["rgb"]["name"] == "Cosmos-Tokenizer-DV4x8x8" and set(db.tokenizers) == {"rgb", "depth",
                                                                                                 "gaze", "cam"}
    # re-importing adds nothing
    again = wds.import_shards(root, tmp_path / "tokens" / "rel.lance")
    assert again.db_versions == [] and open_token_db(tmp_path / "tokens" / "rel.lance").num_rows == 9


def test_export_round_trip_and_the_official_loader_reads_it(tmp_path, release):
    import webdataset

    root, truth = release
    wds.import_shards(root, tmp_path / "a.lance")
    out = tmp_path / "exported"
    report = wds.export_shards(tmp_path / "a.lance", out, shard_size=2)
    assert report.issues == [] and report.samples == {"egoexo": 3, "egogen": 6}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.tar")) == sorted(
        [f"{m}/egogen/shard-{k:06d}.tar" for m in ("rgb", "depth", "cam") for k in range(3)]
        + [f"{m}/egoexo/shard-{k:06d}.tar" for m in ("rgb", "gaze", "cam") for k in range(2)])
    # What the official loader does: open shard N of each modality with WebDataset, walk them in
    # lockstep (keys must agree at every position), np.load(...)["arr_0"], astype(int64).
    seen = {}
    for ds, mods in (("egogen", ("rgb", "depth", "cam")), ("egoexo", ("rgb", "gaze", "cam"))):
        for k in range(3 if ds == "egogen" else 2):
            its = [webdataset.tarfile_samples([{"url": str(out / m / ds / f"shard-{k:06d}.tar")}]) for m in mods]
            for samples in zip(*its, strict=True):
                keys = {s["__key__"] for s in samples}
                assert len(keys) == 1
                for m, s in zip(mods, samples):
                    assert set(s) == {"__key__", "__url__", "npz"}
                    arr = np.load(io.BytesIO(s["npz"]), allow_pickle=False)["arr_0"].astype("int64")
                    assert arr.shape == GRIDS[m]
                    seen[(ds, keys.pop() if m == mods[-1] else next(iter(keys)), m)] = arr
    for ds, samples in truth.items():
        for name, mods in samples.items():
            for m, t in mods.items():
                assert np.array_equal(seen[(ds, name, m)], t)  # keys and tokens survive DB -> shards
    # and back: the same clip ids, datasets, sequences, splits and tokens
    wds.import_shards(out, tmp_path / "b.lance")
    a, b = open_token_db(tmp_path / "a.lance"), open_token_db(tmp_path / "b.lance")
    ta, tb = db_tokens(a), db_tokens(b)
    assert ta.keys() == tb.keys()
    for c in ta:
        assert ta[c].keys() == tb[c].keys() and all(np.array_equal(ta[c][m], tb[c][m]) for m in ta[c])
    ia, ib = a.index().sort_by("clip_id").to_pydict(), b.index().sort_by("clip_id").to_pydict()
    assert ia == ib


def test_misaligned_shard_is_reported_not_imported_and_missing_keys_are_skipped(tmp_path, release):
    root, truth = release
    # cam shard 1 of egogen lists its two samples in the other order: out of step with rgb/depth
    tar = root / "cam" / "egogen" / "token" / "shard-000001.tar"
    with tarfile.open(tar) as tf:
        members = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]
    with tarfile.open(tar, "w") as tf:
        for name, data in reversed(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    # gaze shard 0 of egoexo lacks take01_0
    gtar = root / "gaze" / "egoexo" / "shard-000000.tar"
    with tarfile.open(gtar) as tf:
        members = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers() if not m.name.startswith("take01")]
    with tarfile.open(gtar, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    report = wds.import_shards(root, tmp_path / "c.lance")
    kinds = {(i.kind, i.where) for i in report.issues}
    assert ("misaligned_shard", "egogen/token/shard-000001.tar") in kinds
    assert ("missing_key", "egoexo/shard-000000.tar:take01_0") in kinds
    assert report.count("misaligned_shard") == 1 and report.count("missing_key") == 1
    ids = set(open_token_db(tmp_path / "c.lance").clip_ids())
    shard1 = {f"egogen/{n}" for n in list(truth["egogen"])[2:4]}
    assert not ids & shard1  # nothing of the misaligned shard, no half-aligned sample
    assert "egoexo/take01_0" not in ids
    assert len(ids) == 9 - 2 - 1
    # the command says so in one line per issue and writes the report
    rc = cli(["db", "import-wds", str(root), "--out", str(tmp_path / "d.lance"), "--strict"])
    assert rc == 1
    rep = json.loads((tmp_path / "d.import.json").read_text())
    assert rep["counts"] == {"misaligned_shard": 1, "missing_key": 1}


def test_unsafe_tars_and_bad_payloads_are_refused_without_unpickling(tmp_path, release):
    root, _ = release
    # a member escaping the folder refuses the whole shard
    evil = root / "rgb" / "egoexo" / "shard-000001.tar"
    with tarfile.open(evil, "a") as tf:
        info = tarfile.TarInfo("../../escape.npz")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    # a pickled object array, a wrong-size array, an out-of-vocabulary id and an extra array
    bad = root / "cam" / "egogen" / "token" / "shard-000002.tar"
    payloads = {}
    obj = io.BytesIO()
    np.save(obj, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    payloads["walk1_1.npy"] = obj.getvalue()
    for name, arr in (("walk1_2.npz", {"arr_0": np.zeros(29, np.int64)}),):
        b = io.BytesIO()
        np.savez(b, **arr)
        payloads[name] = b.getvalue()
    with tarfile.open(bad, "w") as tf:
        for name, data in payloads.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    oov = root / "gaze" / "egoexo" / "shard-000000.tar"
    b = io.BytesIO()
    np.savez(b, np.full(30, 256, np.int64), extra=np.zeros(2))
    with tarfile.open(oov, "w") as tf:
        for name in ("take00_0.npz", "take01_0.npz"):
            data = b.getvalue() if name == "take00_0.npz" else wds._npz_bytes(np.full(30, 999, np.int64))
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    report = wds.import_shards(root, tmp_path / "e.lance")
    by = {i.where: i for i in report.issues}
    assert by[str(evil)].kind == "unsafe_shard" and "'..'" in by[str(evil)].message
    assert not (root.parent / "escape.npz").exists()
    msgs = [i.message for i in report.issues if i.kind == "bad_sample"]
    assert any("dtype object" in m and "never unpickled" in m for m in msgs)
    assert any("(29 tokens), the registry says 30" in m for m in msgs)
    assert any("expected exactly one array arr_0" in m for m in msgs)
    assert any("token ids outside [0, 256) (999..999)" in m for m in msgs)
    ids = set(open_token_db(tmp_path / "e.lance").clip_ids())
    assert {"egogen/walk1_1", "egogen/walk1_2", "egoexo/take00_0", "egoexo/take01_0", "egoexo/take02_0"}.isdisjoint(ids)
    assert len(ids) == 4  # egogen shards 0 and 1


def test_cli_export_refuses_non_base_db_and_nonempty_output(tmp_path, release, capsys):
    from train_factories import make_token_db

    tiny = make_token_db(tmp_path / "tiny.lance")
    rc = cli(["db", "export-wds", tiny, "--out", str(tmp_path / "x")])
    assert rc == 2 and "base-size tokens only" in capsys.readouterr().err
    root, _ = release
    assert cli(["db", "import-wds", str(root), "--out", str(tmp_path / "r.lance")]) == 0
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    assert cli(["db", "export-wds", str(tmp_path / "r.lance"), "--out", str(tmp_path / "busy")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert cli(["db", "export-wds", str(tmp_path / "r.lance"), "--out", str(tmp_path / "o"),
                "--datasets", "egoexo", "--modalities", "rgb", "cam"]) == 0
    assert sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*.tar")) == [
        "cam/egoexo/shard-000000.tar", "rgb/egoexo/shard-000000.tar"]
    assert cli(["db", "import-wds", str(tmp_path / "nowhere"), "--out", str(tmp_path / "n.lance")]) == 2


def test_model_modality_names_are_accepted_but_not_twice(tmp_path, release):
    root, truth = release
    (root / "cam").rename(root / "tok_cam")  # the model's name for the folder (modality_info.py)
    report = wds.import_shards(root, tmp_path / "f.lance")
    assert report.samples == {"egoexo": 3, "egogen": 6} and report.issues == []
    write_official_shards(root, "egoexo", ["cam"], list(truth["egoexo"]), 2, seed=1)
    with pytest.raises(wds.WdsError, match="modality cam has two folders .*tok_cam and cam|cam and tok_cam"):
        wds.discover(root)
