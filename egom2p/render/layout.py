"""On-disk layout of a render (EgoGen's conventions) and its writer (the reader: :mod:`.reader`).

::

    OUT/
      render.json                  the render's settings (format, seed, seconds, size, fps, scene, ...)
      s<seed>_<index:04d>/         one folder per sequence
        rgb.mp4                    H.264 RGB at 30 FPS (or rgb/000000.png ... with rgb_format="png")
        depth.npy                  float32 [N, H, W] z-depth in metres, 0 = no hit (background)
        c2w_opengl.npy             float64 [N, 4, 4] camera-to-world, OpenGL camera axes
                                   (x right, y up, z backward), world y-up, metres
        intrinsics.json            fx, fy, cx, cy (pixels; pixel i centred at i), width, height
        gaze_point_world.npy       float64 [N, 3] 3D fixation point, world
        gaze_valid.npy             bool [N] False during blinks and when the point is off-screen
        gaze_state.npy             int8 [N] 0 fixation, 1 saccade, 2 pursuit, 3 blink, 4 offscreen
        gaze_object.npy            int32 [N] index into scene.json objects (-1 none)
        scene.json                 scene description, objects with bounding boxes, walked path
        manifest.json              written last: a sequence without it is incomplete
        preview.png                contact sheet (only with --preview)

A sequence is written into ``OUT/.partial-<name>/`` and renamed into place after its manifest, so a
half-written sequence never looks complete. Rendering into a folder that holds a different render
(other seed, size, scene, ...) is refused; rendering the same settings again skips complete
sequences.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .reader import FORMAT, FORMAT_VERSION, RenderLayoutError, load_array, read_manifest, read_rgb
from .scene import Scene, load_mesh_scene
from .sequence import RenderConfig, plan_sequence, sequence_name
from .shading import Renderer

log = logging.getLogger(__name__)

# the reader (egom2p.render.reader) is re-exported here, where the layout is described
__all__ = ["FORMAT", "FORMAT_VERSION", "GENERATOR_VERSION", "RGB_FORMATS", "SEQUENCE_FILES", "RenderLayoutError",
           "check_output_dir", "is_complete", "load_array", "read_manifest", "read_rgb", "render_dataset",
           "render_record", "scene_record", "write_sequence"]

GENERATOR_VERSION = "1"  # bump when the same settings would render different pixels
RGB_FORMATS = ("mp4", "png")
SEQUENCE_FILES = ("depth.npy", "c2w_opengl.npy", "intrinsics.json", "gaze_point_world.npy", "gaze_valid.npy",
                  "gaze_state.npy", "gaze_object.npy", "scene.json")


def render_record(config: RenderConfig, seed: int, rgb_format: str, scene: Scene | None = None) -> dict:
    """The settings that define a render (compared to decide "same render" vs "different render")."""
    rec = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "generator": "egom2p.render",
        "generator_version": GENERATOR_VERSION, "seed": int(seed), "seconds": float(config.seconds),
        "fps": int(config.fps), "width": int(config.width), "height": int(config.height),
        "hfov_deg": float(config.hfov_deg), "rgb_format": rgb_format,
        "scene": None, "room": dataclasses.asdict(config.room), "walk": dataclasses.asdict(config.walk),
        "gaze": dataclasses.asdict(config.gaze),
    }
    if config.scene:
        d = scene.description if scene is not None else {}
        rec["scene"] = {"path": d.get("path", str(Path(config.scene).resolve())), "sha256": d.get("sha256"),
                        "up": config.scene_up}
    return json.loads(json.dumps(rec))  # tuples -> lists, as read back from JSON


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _differences(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k} ({a.get(k)!r} there, {b.get(k)!r} asked)")
    return out


def check_output_dir(out: Path, record: dict) -> None:
    """Refuse a folder that holds a different render or other files; accept empty or the same render."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RenderLayoutError(out, "output path exists and is not a folder")
    meta = out / "render.json"
    if meta.exists():
        try:
            old = json.loads(meta.read_text())
        except (OSError, ValueError) as e:
            raise RenderLayoutError(meta, f"unreadable render settings ({e}); not overwriting, choose another --out") from e
        old = {k: v for k, v in old.items() if k != "sequences"}
        diff = _differences(old, record)
        if diff:
            raise RenderLayoutError(out, "already holds a different render; differs in " + "; ".join(diff[:6])
                                    + ". Choose another --out or delete the folder.")
    elif out.exists():
        other = [p.name for p in out.iterdir() if not p.name.startswith(".partial-")]
        if other:
            raise RenderLayoutError(out, f"folder is not empty and holds no render.json (found {', '.join(sorted(other)[:5])}); "
                                         "not writing a render into it")


def _mp4_writer(path: Path, width: int, height: int, fps: int):
    """Streams RGB frames into H.264 (yuv420p, CRF 17, PyAV in this process) while rendering."""
    from ..video import H264Writer, VideoError

    if width % 2 or height % 2:
        raise ValueError(f"mp4 needs even width and height, got {width}x{height}; use rgb_format='png'")
    try:
        return H264Writer(path, width, height, fps=fps, crf=17, preset="ultrafast")
    except VideoError as e:
        raise RenderLayoutError(path, str(e)) from e


class _PngWriter:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir()
        self.i = 0

    def write(self, frame: np.ndarray) -> None:
        import cv2

        cv2.imwrite(str(self.folder / f"{self.i:06d}.png"), np.ascontiguousarray(frame[..., ::-1]),
                    [cv2.IMWRITE_PNG_COMPRESSION, 1])
        self.i += 1

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None


def scene_record(scene: Scene, walk=None) -> dict:
    rec = {"description": scene.description, "floor_y": scene.floor_y, "up": "y", "units": "m",
           "triangles": scene.num_triangles,
           "lights": np.round(scene.lights, 4).tolist(),
           "objects": [{"name": o.name, "kind": o.kind, "target": bool(o.target),
                        "bbox_min": np.round(o.bbox_min, 4).tolist(), "bbox_max": np.round(o.bbox_max, 4).tolist()}
                       for o in scene.objects]}
    if walk is not None:
        rec["walk"] = {"path_xz": np.round(walk.path, 4).tolist(), "eye_height": round(float(walk.eye_height), 4)}
    return rec


def write_sequence(out: Path, config: RenderConfig, seed: int, index: int, scene: Scene | None = None,
                   rgb_format: str = "mp4", record: dict | None = None) -> Path:
    """Render sequence ``index`` straight to disk (frames streamed; manifest last; atomic rename)."""
    out = Path(out)
    name = sequence_name(seed, index)
    final = out / name
    partial = out / f".partial-{name}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    t0 = time.perf_counter()
    writer = None
    try:
        scene, walk, gaze, T, K = plan_sequence(config, seed, index, scene)
        n, h, w = len(T), config.height, config.width
        renderer = Renderer(scene, w, h, K, nthreads=config.nthreads)
        depth = np.lib.format.open_memmap(partial / "depth.npy", mode="w+", dtype=np.float32, shape=(n, h, w))
        writer = _mp4_writer(partial / "rgb.mp4", w, h, config.fps) if rgb_format == "mp4" else _PngWriter(partial / "rgb")
        for i in range(n):
            rgb, depth[i] = renderer.render(T[i])
            writer.write(rgb)
        writer.close()
        writer = None
        depth.flush()
        del depth
        np.save(partial / "c2w_opengl.npy", T.astype(np.float64))
        _write_json(partial / "intrinsics.json", {"fx": K[0], "fy": K[1], "cx": K[2], "cy": K[3], "width": w,
                                                  "height": h, "model": "pinhole",
                                                  "pixel_centers": "integer (pixel i spans [i-0.5, i+0.5])"})
        np.save(partial / "gaze_point_world.npy", gaze.point.astype(np.float64))
        np.save(partial / "gaze_valid.npy", gaze.valid)
        np.save(partial / "gaze_state.npy", gaze.state.astype(np.int8))
        np.save(partial / "gaze_object.npy", gaze.target_object.astype(np.int32))
        _write_json(partial / "scene.json", scene_record(scene, walk))
        files = ["rgb.mp4" if rgb_format == "mp4" else "rgb/"] + list(SEQUENCE_FILES)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "generator_version": GENERATOR_VERSION,
                    "name": name, "seed": int(seed), "index": int(index), "fps": int(config.fps), "num_frames": int(n),
                    "width": w, "height": h, "seconds": float(config.seconds), "rgb_format": rgb_format,
                    "scene": scene.description, "files": files,
                    "sizes": {f: (partial / f).stat().st_size for f in files if not f.endswith("/")},
                    "gaze_valid_fraction": round(float(gaze.valid.mean()), 4),
                    "depth_hit_fraction": None, "render_seconds": round(time.perf_counter() - t0, 3),
                    "settings": record}
        d = np.load(partial / "depth.npy", mmap_mode="r")
        manifest["depth_hit_fraction"] = round(float((d[:: max(1, n // 10)] > 0).mean()), 4)
        del d
        _write_json(partial / "manifest.json", manifest)
        if final.exists():
            shutil.rmtree(final)
        os.rename(partial, final)
    except BaseException:
        if writer is not None:
            writer.abort()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def is_complete(seq_dir: Path, record: dict | None = None) -> bool:
    """Whether a sequence folder has its manifest (and, given ``record``, was made with these settings)."""
    m = Path(seq_dir) / "manifest.json"
    if not m.is_file():
        return False
    if record is None:
        return True
    try:
        man = json.loads(m.read_text())
    except (OSError, ValueError):
        return False
    return man.get("settings") == record


def render_dataset(out_dir, sequences: int, seconds: float = 4.0, seed: int = 0, size: int | tuple[int, int] = 256,
                   scene: str | None = None, scene_up: str = "auto", preview: bool = False, rgb_format: str = "mp4",
                   config: RenderConfig | None = None, progress: bool = True, jobs: int = 1) -> list[Path]:
    """Render ``sequences`` sequences into ``out_dir`` (see module docstring); returns their folders.

    Idempotent: complete sequences of the same render are kept (skipped), missing ones rendered.
    ``jobs`` > 1 renders sequences in that many worker processes (one core each); the result is
    identical to ``jobs=1`` because every sequence depends only on ``(seed, index)``.
    """
    if sequences < 1:
        raise ValueError(f"sequences must be >= 1, got {sequences}")
    if rgb_format not in RGB_FORMATS:
        raise ValueError(f"rgb_format must be one of {RGB_FORMATS}, got {rgb_format!r}")
    if config is None:
        w, h = (size, size) if np.isscalar(size) else size
        config = RenderConfig(seconds=seconds, width=int(w), height=int(h), scene=str(scene) if scene else None,
                              scene_up=scene_up)
    if config.num_frames < 2:
        raise ValueError(f"seconds must give at least 2 frames at {config.fps} FPS, got {config.seconds}")
    out = Path(out_dir)
    scene_obj = None
    if config.scene:
        from .walk import free_space

        scene_obj = load_mesh_scene(config.scene, up=config.scene_up, seed=seed)
        free_space(scene_obj, config.walk)  # fail before anything is written when there is nowhere to walk
    record = render_record(config, seed, rgb_format, scene_obj)
    check_output_dir(out, record)
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "render.json"
    names = [sequence_name(seed, i) for i in range(sequences)]
    existing = json.loads(meta.read_text()).get("sequences", []) if meta.exists() else []
    _write_json(meta, {**record, "sequences": sorted(set(existing))})
    todo = []
    for i in range(sequences):
        final = out / names[i]
        if is_complete(final, record):
            log.info("%s is complete, skipping", final)
        elif final.exists() and (final / "manifest.json").exists():
            raise RenderLayoutError(final, "holds a sequence rendered with other settings; not overwriting")
        else:
            todo.append(i)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sequences, initial=sequences - len(todo), desc=f"render egogen -> {out}", unit="seq")

    def finished(i: int) -> None:
        nonlocal existing
        existing = sorted(set(existing) | {names[i]})
        _write_json(meta, {**record, "sequences": existing})
        if bar is not None:
            bar.update(1)

    if jobs > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_render_worker, out, config, seed, i, rgb_format, record): i for i in todo}
            for fut in as_completed(futures):
                fut.result()  # re-raises a worker's error (its partial folder is already removed)
                finished(futures[fut])
    else:
        for i in todo:
            write_sequence(out, config, seed, i, scene_obj, rgb_format, record)
            finished(i)
    if bar is not None:
        bar.close()
    done = [out / n for n in names]
    if preview:
        from .preview import write_preview

        for final in done:
            if not (final / "preview.png").exists():
                write_preview(final)
    return done


_WORKER_SCENES: dict = {}


def _render_worker(out: Path, config: RenderConfig, seed: int, index: int, rgb_format: str, record: dict) -> Path:
    """One sequence in a worker process (the user mesh is loaded once per process)."""
    scene = None
    if config.scene:
        key = (config.scene, config.scene_up, seed)
        if key not in _WORKER_SCENES:
            _WORKER_SCENES[key] = load_mesh_scene(config.scene, up=config.scene_up, seed=seed)
        scene = _WORKER_SCENES[key]
    return write_sequence(out, config, seed, index, scene, rgb_format, record)
