"""Render layout on disk: files and manifest, idempotent re-runs, refusals, the CLI and --preview."""

from __future__ import annotations

import json

import numpy as np
import pytest

from egom2p.cli import main
from egom2p.render import RenderLayoutError, render_dataset, render_sequence
from egom2p.render.layout import read_manifest, read_rgb


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("egogen") / "render"
    dirs = render_dataset(out, sequences=2, seconds=1.0, seed=4, size=48, progress=False)
    return out, dirs


def test_layout_files_and_manifest(rendered):
    out, dirs = rendered
    assert [d.name for d in dirs] == ["s4_0000", "s4_0001"]
    meta = json.loads((out / "render.json").read_text())
    assert meta["seed"] == 4 and meta["width"] == 48 and meta["fps"] == 30 and meta["sequences"] == ["s4_0000", "s4_0001"]
    d = dirs[0]
    man = read_manifest(d)
    assert man["num_frames"] == 30 and man["format_version"] == 1 and man["scene"]["kind"] == "procedural_room"
    for f in ("rgb.mp4", "depth.npy", "c2w_opengl.npy", "intrinsics.json", "gaze_point_world.npy", "gaze_valid.npy",
              "gaze_state.npy", "gaze_object.npy", "scene.json"):
        assert (d / f).is_file(), f
    assert not list(out.glob(".partial-*"))
    depth = np.load(d / "depth.npy")
    assert depth.dtype == np.float32 and depth.shape == (30, 48, 48)
    # what is on disk is what the in-memory API renders (RGB through H.264, so approximately)
    mem = render_sequence(seed=4, seconds=1.0, size=48, index=0)
    np.testing.assert_array_equal(depth, mem.depth)
    np.testing.assert_array_equal(np.load(d / "c2w_opengl.npy"), mem.c2w_opengl)
    np.testing.assert_array_equal(np.load(d / "gaze_valid.npy"), mem.gaze_valid)
    rgb = read_rgb(d, man, np.arange(30))
    assert rgb.shape == (30, 48, 48, 3)
    err = np.abs(rgb.astype(float) - mem.frames).mean()
    assert err < 6.0, err
    k = json.loads((d / "intrinsics.json").read_text())
    np.testing.assert_allclose([k["fx"], k["fy"], k["cx"], k["cy"]], mem.intrinsics)


def test_same_render_again_is_a_noop(rendered):
    out, _ = rendered
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "render.json"}
    render_dataset(out, sequences=2, seconds=1.0, seed=4, size=48, progress=False)
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "render.json"}
    assert before == after


def test_different_render_is_refused(rendered):
    out, _ = rendered
    with pytest.raises(RenderLayoutError, match="different render.*seed"):
        render_dataset(out, sequences=1, seconds=1.0, seed=5, size=48, progress=False)
    with pytest.raises(RenderLayoutError, match="width"):
        render_dataset(out, sequences=1, seconds=1.0, seed=4, size=64, progress=False)


def test_foreign_folder_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RenderLayoutError, match="not empty"):
        render_dataset(tmp_path, sequences=1, seconds=0.5, seed=0, size=16, progress=False)


def test_interrupted_sequence_is_not_complete(tmp_path, monkeypatch):
    from egom2p.render import layout

    calls = {"n": 0}
    real = layout.Renderer.render

    def flaky(self, pose):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt("simulated interruption")
        return real(self, pose)

    monkeypatch.setattr(layout.Renderer, "render", flaky)
    with pytest.raises(KeyboardInterrupt):
        render_dataset(tmp_path, sequences=1, seconds=0.5, seed=0, size=16, progress=False)
    assert not (tmp_path / "s0_0000").exists() and not list(tmp_path.glob(".partial-*"))
    monkeypatch.setattr(layout.Renderer, "render", real)
    render_dataset(tmp_path, sequences=1, seconds=0.5, seed=0, size=16, progress=False)
    assert (tmp_path / "s0_0000" / "manifest.json").is_file()


def test_png_frames_are_lossless(tmp_path):
    (d,) = render_dataset(tmp_path, sequences=1, seconds=0.3, seed=2, size=24, rgb_format="png", progress=False)
    man = read_manifest(d)
    mem = render_sequence(seed=2, seconds=0.3, size=24)
    np.testing.assert_array_equal(read_rgb(d, man, np.arange(man["num_frames"])), mem.frames)


def test_cli_render_with_preview(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["render", "egogen", "--out", str(out), "--sequences", "1", "--seconds", "1", "--seed", "0",
               "--size", "64", "--preview"])
    assert rc == 0
    assert "rendered 1 sequences" in capsys.readouterr().out
    png = out / "s0_0000" / "preview.png"
    assert png.is_file()
    import cv2

    im = cv2.imread(str(png))
    assert im is not None and im.shape[1] > 2 * im.shape[0] and im.std() > 20
    # bad scene -> clear error, exit code 2, nothing presented as complete
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"")
    rc = main(["render", "egogen", "--out", str(tmp_path / "cli2"), "--sequences", "1", "--seconds", "1",
               "--scene", str(bad)])
    assert rc == 2
    assert "bad.ply" in capsys.readouterr().err
    assert not (tmp_path / "cli2" / "render.json").exists()
    rc = main(["render", "egogen", "--out", str(out), "--sequences", "1", "--seconds", "1", "--seed", "9",
               "--size", "64"])
    assert rc == 2 and "different render" in capsys.readouterr().err


def test_parallel_jobs_give_the_same_render(rendered, tmp_path):
    _, dirs = rendered
    par = render_dataset(tmp_path / "par", sequences=2, seconds=1.0, seed=4, size=48, progress=False, jobs=2)
    for a, b in zip(dirs, par):
        assert a.name == b.name
        for f in ("depth.npy", "c2w_opengl.npy", "gaze_point_world.npy", "gaze_valid.npy"):
            np.testing.assert_array_equal(np.load(a / f), np.load(b / f))
    assert json.loads((tmp_path / "par" / "render.json").read_text())["sequences"] == ["s4_0000", "s4_0001"]


def test_scene_without_free_space_writes_nothing(tmp_path, capsys):
    import open3d as o3d

    from egom2p.render.scene import MeshBuilder

    mb = MeshBuilder(np.random.default_rng(0))
    o = mb.begin_object("room", "wall", target=False)
    mb.box([0, 0, 0], [3, 2.5, 3], [0.6, 0.6, 0.6], o, cell=0.5)
    b = mb.begin_object("block", "cabinet")
    mb.box([0.05, 0, 0.05], [2.95, 1.2, 2.95], [0.5, 0.3, 0.2], b, cell=0.5)
    mesh = tmp_path / "full.ply"
    o3d.io.write_triangle_mesh(str(mesh), mb.build(0.0, np.zeros((0, 4)), {}).to_open3d())
    rc = main(["render", "egogen", "--out", str(tmp_path / "out"), "--sequences", "1", "--seconds", "1",
               "--scene", str(mesh), "--scene-up", "y"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "full.ply" in err and "free floor" in err
    assert not (tmp_path / "out").exists()
