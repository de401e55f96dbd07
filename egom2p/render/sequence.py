"""One rendered sequence in memory: scene -> walk -> gaze -> head poses -> frames.

:func:`render_sequence` is the Python entry point for making ground truth quickly (adapter fixture
trees, tests, notebooks). Everything is derived from ``(seed, index)`` with numpy's SeedSequence,
so a sequence is reproducible bit for bit and independent of how many others are rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .gaze import STATE_NAMES, Gaze, GazeConfig, head_orientation, mark_offscreen, simulate_gaze
from .scene import RoomConfig, Scene, load_mesh_scene, procedural_room
from .shading import Renderer, default_intrinsics
from .walk import Walk, WalkConfig, free_space, walk_timeline

FPS = 30


@dataclass
class RenderConfig:
    """Everything that defines a render apart from the seed and the sequence index."""

    seconds: float = 4.0
    width: int = 256
    height: int = 256
    fps: int = FPS
    hfov_deg: float = 90.0
    scene: str | None = None  # path of a user mesh; None = procedural rooms (one per sequence)
    scene_up: str = "auto"  # up axis of the user mesh: auto, x, y, z, -x, -y, -z
    room: RoomConfig = field(default_factory=RoomConfig)
    walk: WalkConfig = field(default_factory=WalkConfig)
    gaze: GazeConfig = field(default_factory=GazeConfig)
    nthreads: int = 1  # ray-casting threads (1 = one core)

    @property
    def num_frames(self) -> int:
        return round(self.seconds * self.fps)


@dataclass
class RenderedSequence:
    """A rendered sequence in EgoGen's conventions (world y-up, OpenGL camera axes)."""

    name: str
    seed: int
    index: int
    frames: np.ndarray  # uint8 [N, H, W, 3]
    depth: np.ndarray  # float32 [N, H, W] z-depth in metres, 0 = no hit
    c2w_opengl: np.ndarray  # float64 [N, 4, 4] camera-to-world, OpenGL axes (x right, y up, z back)
    intrinsics: np.ndarray  # (fx, fy, cx, cy) pixels, pixel i centred at i
    gaze_point: np.ndarray  # float64 [N, 3] fixation point, world
    gaze_valid: np.ndarray  # bool [N]
    gaze_state: np.ndarray  # int8 [N] see egom2p.render.gaze.STATE_NAMES
    gaze_object: np.ndarray  # int32 [N] index of the fixated object (-1 none)
    scene: Scene
    walk: Walk
    fps: int = FPS

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def c2w_opencv(self) -> np.ndarray:
        """[N, 4, 4] camera-to-world in OpenCV camera axes (x right, y down, z forward), world y-up."""
        from .. import geometry as geo

        return geo.opengl_to_opencv_c2w(self.c2w_opengl)

    @property
    def gaze_px(self) -> np.ndarray:
        """[N, 2] gaze in source pixels as the egogen adapter derives it (NaN: blink, off-image, occluded)."""
        from .gaze import project_fixations

        return project_fixations(self.c2w_opencv, self.intrinsics, self.width, self.height, self.gaze_point,
                                 self.gaze_valid, depth_at=lambda f, v, u: self.depth[f, v, u])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])


def sequence_name(seed: int, index: int) -> str:
    return f"s{int(seed)}_{int(index):04d}"


def sequence_rngs(seed: int, index: int) -> dict[str, np.random.Generator]:
    """Independent generators for each part of sequence ``index`` of render ``seed``."""
    ss = np.random.SeedSequence([int(seed), int(index)])
    scene, walk, gaze, head = ss.spawn(4)
    return {"scene": scene, "walk": np.random.default_rng(walk), "gaze": np.random.default_rng(gaze),
            "head": np.random.default_rng(head)}


def make_scene(config: RenderConfig, seed: int, index: int, rng_scene=None) -> Scene:
    if config.scene:
        return load_mesh_scene(config.scene, up=config.scene_up, seed=seed)
    rng_scene = rng_scene if rng_scene is not None else sequence_rngs(seed, index)["scene"]
    return procedural_room(rng_scene, config.room)


def plan_sequence(config: RenderConfig, seed: int, index: int = 0, scene: Scene | None = None):
    """Scene, walk, gaze and OpenGL camera-to-world poses of a sequence (no pixels yet)."""
    rngs = sequence_rngs(seed, index)
    scene = scene if scene is not None else make_scene(config, seed, index, rngs["scene"])
    n = config.num_frames
    if n < 2:
        raise ValueError(f"a sequence needs at least 2 frames, got {config.seconds} s at {config.fps} FPS")
    fs = free_space(scene, config.walk)
    walk = walk_timeline(fs, n, config.fps, rngs["walk"], config.walk)
    gaze = simulate_gaze(scene, walk, config.fps, rngs["gaze"], config.gaze)
    R = head_orientation(walk, gaze, config.fps, rngs["head"], config.gaze)
    T = np.zeros((n, 4, 4))
    T[:, :3, :3] = R
    T[:, :3, 3] = walk.eye
    T[:, 3, 3] = 1.0
    K = default_intrinsics(config.width, config.height, config.hfov_deg)
    gaze = mark_offscreen(gaze, T, K, config.width, config.height)
    return scene, walk, gaze, T, K


def render_sequence(seed: int = 0, seconds: float = 4.0, size: int | tuple[int, int] = 256, index: int = 0,
                    scene: str | Scene | None = None, config: RenderConfig | None = None,
                    progress: bool = False) -> RenderedSequence:
    """Render sequence ``index`` of the render with ``seed`` into memory.

    ``size`` is the side of a square image or ``(width, height)``. ``scene`` is a mesh path (or a
    ready :class:`Scene`); None builds the procedural room of ``(seed, index)``. A ``config``
    overrides seconds/size/scene defaults when given.
    """
    if config is None:
        w, h = (size, size) if np.isscalar(size) else size
        config = RenderConfig(seconds=seconds, width=int(w), height=int(h),
                              scene=scene if isinstance(scene, str) else None)
    scene_obj = scene if isinstance(scene, Scene) else None
    scene_obj, walk, gaze, T, K = plan_sequence(config, seed, index, scene_obj)
    renderer = Renderer(scene_obj, config.width, config.height, K, nthreads=config.nthreads)
    n = len(T)
    frames = np.empty((n, config.height, config.width, 3), np.uint8)
    depth = np.empty((n, config.height, config.width), np.float32)
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"render {sequence_name(seed, index)}", unit="frame", leave=False)
    for i in it:
        frames[i], depth[i] = renderer.render(T[i])
    return RenderedSequence(name=sequence_name(seed, index), seed=int(seed), index=int(index), frames=frames,
                            depth=depth, c2w_opengl=T, intrinsics=K, gaze_point=gaze.point, gaze_valid=gaze.valid,
                            gaze_state=gaze.state, gaze_object=gaze.target_object, scene=scene_obj, walk=walk,
                            fps=config.fps)


__all__ = [
    "FPS",
    "STATE_NAMES",
    "Gaze",
    "RenderConfig",
    "RenderedSequence",
    "plan_sequence",
    "render_sequence",
    "sequence_name",
]
