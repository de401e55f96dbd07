"""Safe reading of untrusted files: malicious pickles and escaping tar members are refused."""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from egom2p.adapters import SourceError
from egom2p.safeio import (UnsafeArchiveError, UnsafePickleError, iter_tar_members, load_npy, load_npy_object,
                           load_restricted_pickle, loads_restricted_pickle, safe_extract_tar)


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
