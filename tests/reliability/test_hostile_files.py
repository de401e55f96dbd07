"""Hostile and damaged files: refused with the file named; nothing executes, nothing is written, nothing else changes.

* raw data: malicious pickles (six kinds of global), escaping tar members (path traversal, absolute
  paths, symlinks and hard links out of the folder, devices, FIFOs) in the safe readers and in the
  adapters that use them (ARCTIC's pickled camera file, HOT3D-Clips tars);
* model artefacts: training checkpoints and tokenizer checkpoints with zeroed, 0xFF-filled or
  truncated bytes, a damaged manifest, a forged manifest over a malicious ``optimizer.pt``; and the
  documented behaviour for checkpoints written before manifests existed (load with one warning).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import tarfile

import numpy as np
import pytest

from egom2p.adapters import SourceError, get_adapter
from egom2p.safeio import (UnsafeArchiveError, UnsafePickleError, iter_tar_members, load_npy, load_npy_object,
                           load_restricted_pickle, loads_restricted_pickle, safe_extract_tar)

from .artefacts import DAMAGES, damage_file


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    for protocol in (2, 4, 5):
        path = tmp_path / f"evil{protocol}.pkl"
        path.write_bytes(pickle.dumps({"R_k_cam_np": np.eye(3), "x": _Evil(marker)}, protocol=protocol))
        with pytest.raises(UnsafePickleError) as e:
            load_restricted_pickle(path)
        assert str(path) in str(e.value) and "system" in str(e.value)
        assert isinstance(e.value, SourceError)
    assert not marker.exists()


def test_malicious_object_npy_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "x.egocam.dist.npy"
    arr = np.empty((), dtype=object)
    arr[()] = {"intrinsics": np.eye(3), "evil": _Evil(marker)}
    np.save(path, arr, allow_pickle=True)
    with pytest.raises(UnsafePickleError, match="posix.system|os.system|nt.system"):
        load_npy(path)
    assert not marker.exists()


def test_other_globals_refused(tmp_path):
    payload = pickle.dumps(io.BytesIO(b"x"))
    with pytest.raises(UnsafePickleError, match="_io.BytesIO"):
        loads_restricted_pickle(payload, "mem.pkl")
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        loads_restricted_pickle(b"cbuiltins\neval\n(S'1+1'\ntR.", "mem.pkl")


def test_numpy_pickles_admitted(tmp_path):
    data = {"R_k_cam_np": np.random.rand(5, 3, 3).astype(np.float32), "T_k_cam_np": np.random.rand(5, 3, 1),
            "intrinsics": np.eye(3), "dist8": np.arange(8.0), "names": ["a", "b"], "n": 3, "ok": True,
            "none": None, "pair": (1.5, "x"), "scalar": np.float64(2.5), "i": np.int32(7)}
    for protocol in (2, 3, 4, 5):
        out = loads_restricted_pickle(pickle.dumps(data, protocol=protocol))
        for k, v in data.items():
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(out[k], v)
                assert out[k].dtype == v.dtype
            else:
                assert out[k] == v
    # the ARCTIC way: np.save of a dict (0-d object array)
    path = tmp_path / "s01_box_grab_01.egocam.dist.npy"
    np.save(path, data, allow_pickle=True)
    out = load_npy_object(path)
    np.testing.assert_array_equal(out["R_k_cam_np"], data["R_k_cam_np"])
    # plain numeric npy files go through np.load without pickle
    np.save(tmp_path / "a.npy", np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(load_npy(tmp_path / "a.npy"), np.arange(12.0).reshape(3, 4))


def test_bad_npy_and_missing_files(tmp_path):
    with pytest.raises(SourceError, match="file not found"):
        load_npy(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(SourceError, match="junk.npy.*not a valid .npy"):
        load_npy(tmp_path / "junk.npy")
    (tmp_path / "trunc.pkl").write_bytes(pickle.dumps({"a": np.eye(3)})[:20])
    with pytest.raises(SourceError, match="trunc.pkl.*unreadable pickle"):
        load_restricted_pickle(tmp_path / "trunc.pkl")


def _tar(path, members):
    """members: list of (TarInfo kwargs, bytes or None)."""
    with tarfile.open(path, "w") as tf:
        for info, data in members:
            ti = tarfile.TarInfo(info.pop("name"))
            for k, v in info.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
    return path


def test_tar_members_in_memory_and_extract(tmp_path):
    tar = _tar(tmp_path / "clip-000001.tar", [
        ({"name": "AhatDepth", "type": tarfile.DIRTYPE}, None),
        ({"name": "AhatDepth/000000.png"}, b"png0"),
        ({"name": "./AhatDepth/000001.png"}, b"png1"),
        ({"name": "AhatDepth/latest.png", "type": tarfile.SYMTYPE, "linkname": "000001.png"}, None),
    ])
    got = dict(iter_tar_members(tar))
    assert got == {"AhatDepth/000000.png": b"png0", "AhatDepth/000001.png": b"png1", "AhatDepth/latest.png": b"png1"}
    out = tmp_path / "out"
    written = safe_extract_tar(tar, out)
    assert sorted(p.relative_to(out).as_posix() for p in written) == sorted(got)
    assert not (out / "AhatDepth/latest.png").is_symlink()
    assert (out / "AhatDepth/latest.png").read_bytes() == b"png1"


@pytest.mark.parametrize("member,problem", [
    ({"name": "../../escape.txt"}, "path traversal"),
    ({"name": "a/../../escape.txt"}, "path traversal"),
    ({"name": "/tmp/escape.txt"}, "absolute path"),
    ({"name": "link", "type": tarfile.SYMTYPE, "linkname": "../../etc/passwd"}, "outside"),
    ({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, "absolute"),
    ({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../x"}, "outside"),
    ({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, "device"),
    ({"name": "fifo", "type": tarfile.FIFOTYPE}, "device or FIFO"),
])
def test_unsafe_tar_members_refused(tmp_path, member, problem):
    name = member["name"]
    data = b"evil" if member.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else None
    tar = _tar(tmp_path / "AhatDepth_synced.tar", [({"name": "ok.png"}, b"fine"), (dict(member), data)])
    out = tmp_path / "dest" / "inner"
    with pytest.raises(UnsafeArchiveError) as e:
        safe_extract_tar(tar, out)
    msg = str(e.value)
    assert "AhatDepth_synced.tar" in msg and repr(name) in msg and problem in msg
    with pytest.raises(UnsafeArchiveError):
        list(iter_tar_members(tar))
    # nothing was written, not even the safe member before it
    assert not (out / "ok.png").exists()
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "dest" / "escape.txt").exists()


def test_not_a_tar(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"garbage" * 100)
    with pytest.raises(SourceError, match="x.tar.*not a readable tar"):
        list(iter_tar_members(tmp_path / "x.tar"))
    with pytest.raises(SourceError, match="not found"):
        safe_extract_tar(tmp_path / "none.tar", tmp_path / "o")


def test_load_npy_reads_every_header_version(tmp_path):
    from egom2p.safeio import load_npy

    for v in ((1, 0), (2, 0), (3, 0)):  # 3.0: utf-8 header
        p = tmp_path / f"v{v[0]}.npy"
        with open(p, "wb") as f:
            np.lib.format.write_array(f, np.arange(6, dtype=np.int32).reshape(2, 3), version=v)
        assert np.array_equal(load_npy(p), np.arange(6).reshape(2, 3))


# --- hostile raw data inside the adapters ----------------------------------------------------------------------


def test_arctic_malicious_pickle_and_unknown_schema_are_refused(tmp_path):
    from fixtures.arctic import make_arctic_tree

    root = tmp_path / "arctic"
    truth = make_arctic_tree(root)
    A = get_adapter("arctic")
    refs = {r.sequence: r for r in A.discover(root)}
    with pytest.raises(SourceError, match=r"evil_01.egocam.dist.npy: pickle references global .*system"):
        A.load(refs["s02/evil_01"])
    assert not truth["_marker"].exists()
    with pytest.raises(SourceError, match=r"nokeys_01.egocam.dist.npy: missing keys"):
        A.load(refs["s02/nokeys_01"])


def test_hot3d_clip_path_traversal_is_refused(tmp_path):
    from fixtures.hot3d import make_hot3d_clips_tree

    root = tmp_path / "hot3d_clips"
    make_hot3d_clips_tree(root)
    ad = get_adapter("hot3d_aria")
    ref = {r.sequence: r for r in ad.discover(root)}["test_aria/clip-000003"]
    with pytest.raises(SourceError, match=r"clip-000003.tar.*\.\./\.\./escaped.txt"):
        ad.load(ref)
    assert not (root.parent / "escaped.txt").exists() and not (root / "escaped.txt").exists()


# --- damaged and forged model artefacts ---------------------------------------------------------------------


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_model_weights_are_refused_naming_the_file(artefacts, tmp_path, capfd, how):
    """Issue 18 item 3: zeroed bytes used to run with exit 0 (another trajectory), 0xFF bytes ended in a
    torch.multinomial traceback, a truncated file in a raw SafetensorError traceback."""
    from egom2p.checkpoint import load_model
    from egom2p.cli import main
    from egom2p.errors import IntegrityError

    run = artefacts.copy("run", tmp_path)
    weights = artefacts.step(run, 2) / "model.safetensors"
    damage_file(weights, how)
    with pytest.raises(IntegrityError, match=re.escape(str(weights)) + (": damaged, truncated" if how == "truncated"
                                                                          else ": damaged: content sha256")):
        load_model(run)
    out = tmp_path / "pred"
    capfd.readouterr()
    assert main(["predict", "camera", "--ckpt", str(run), "--tokenizers", str(artefacts.tokenizers),
                 "--video", str(artefacts.video), "--out", str(out)]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"egom2p predict: {weights}: damaged"), err
    assert not out.exists()  # nothing written
    # the intact step 1 of the same run still loads: only the damaged file is refused
    load_model(artefacts.step(run, 1))


@pytest.mark.parametrize("name", ["optimizer.pt", "rng.pt", "state.json"])
def test_every_checkpoint_file_is_verified(artefacts, tmp_path, name):
    from egom2p.checkpoint import load_training_state, read_state
    from egom2p.errors import IntegrityError
    from egom2p.model import EgoM2P, ModelConfig
    from egom2p.modalities import Registry
    from egom2p.train import make_optimizer

    run = artefacts.copy("run", tmp_path)
    step = artefacts.step(run, 2)
    st = read_state(step)
    model = EgoM2P(ModelConfig.from_dict(st["model"]), Registry.from_snapshot(st["registry"]))
    opt = make_optimizer(model, type("O", (), {"weight_decay": 0.05, "lr": 1e-3, "betas": (0.9, 0.95)}))
    damage_file(step / name, "zeroed", size=64)
    with pytest.raises(IntegrityError, match=re.escape(str(step / name)) + ": damaged"):
        load_training_state(step, opt)
    assert not opt.state  # nothing was loaded into the optimizer


def test_a_damaged_manifest_is_named(artefacts, tmp_path):
    from egom2p.checkpoint import load_model
    from egom2p.errors import IntegrityError

    run = artefacts.copy("run", tmp_path)
    manifest = artefacts.step(run, 2) / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    with pytest.raises(IntegrityError, match=re.escape(str(manifest)) + ": damaged manifest"):
        load_model(run)


def test_a_forged_manifest_over_a_malicious_optimizer_state_is_still_refused(artefacts, tmp_path):
    """An adversary can rewrite the manifest too; torch.load(weights_only=True) still refuses the pickle."""
    from egom2p.checkpoint import CheckpointError, load_training_state
    from egom2p.integrity import write_manifest

    run = artefacts.copy("run", tmp_path)
    step = artefacts.step(run, 2)
    marker = tmp_path / "pwned"
    (step / "optimizer.pt").write_bytes(pickle.dumps(_Evil(marker)))
    write_manifest(step, ["model.safetensors", "optimizer.pt", "rng.pt", "state.json"])
    import torch

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(CheckpointError, match=re.escape(str(step / "optimizer.pt")) + ": unreadable"):
        load_training_state(step, opt)
    assert not marker.exists()


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_tokenizer_weights_are_refused_naming_the_file(artefacts, tmp_path, how):
    from egom2p.tokenizers import TokenizerError, load_tokenizers

    toks = artefacts.copy("tokenizers", tmp_path)
    weights = toks / "gaze" / "model.safetensors"
    damage_file(weights, how, size=4096)
    with pytest.raises(TokenizerError, match=re.escape(str(weights)) + ": damaged"):
        load_tokenizers(toks)
    assert set(load_tokenizers(toks, modalities=["rgb", "depth", "cam"])) == {"rgb", "depth", "cam"}  # others fine


def test_checkpoints_without_a_manifest_load_with_one_warning(artefacts, tmp_path, capfd):
    """Checkpoints written before manifests existed: loaded unverified, with a one-line warning (documented)."""
    import torch

    from egom2p.checkpoint import load_model

    run = artefacts.copy("run", tmp_path)
    (artefacts.step(run, 2) / "manifest.json").unlink()
    want, _, _ = load_model(artefacts.run)
    capfd.readouterr()
    got, _, info = load_model(run)
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "no manifest.json" in err[0], err
    assert info["step"] == 2
    for (k, a), (_, b) in zip(want.state_dict().items(), got.state_dict().items()):
        assert torch.equal(a, b), k
    # ... but a truncated file in such a checkpoint is still one clear error naming it
    from egom2p.checkpoint import CheckpointError

    damage_file(artefacts.step(run, 2) / "model.safetensors", "truncated")
    with pytest.raises(CheckpointError, match=re.escape(str(artefacts.step(run, 2) / "model.safetensors"))
                       + ": unreadable .*SafetensorError"):
        load_model(run)
