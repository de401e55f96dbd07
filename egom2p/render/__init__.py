"""Synthetic egocentric renderer: the project's ``egogen`` source and its embedded default data.

A walking person's head camera in a procedurally furnished room (or a user's scene mesh), rendered
by ray casting (open3d) with Lambertian shading, with metric depth, OpenGL camera-to-world poses,
intrinsics and eye gaze (3D fixation point + validity), written in EgoGen's conventions.

Python API::

    from egom2p.render import render_sequence, render_dataset
    seq = render_sequence(seed=0, seconds=2, size=128)     # in memory: seq.frames, seq.depth, ...
    render_dataset("data/egogen", sequences=2, seconds=4, seed=0)   # on disk, see layout.py

Modules: :mod:`.scene` (rooms, user meshes; its parts: :mod:`.scene_model`, :mod:`.mesh_builder`,
:mod:`.rooms`, :mod:`.mesh_files`), :mod:`.walk` (free space, path, walking head),
:mod:`.gaze` (fixations, pursuit, saccades, blinks, head orientation), :mod:`.shading` (rays and
shading), :mod:`.sequence` (one sequence in memory), :mod:`.layout` (disk layout, writer),
:mod:`.reader` (reading a render folder), :mod:`.preview` (contact sheets).
"""

from .layout import FORMAT, FORMAT_VERSION, RenderLayoutError, render_dataset, write_sequence
from .scene import Scene, SceneError, load_mesh_scene, procedural_room
from .sequence import RenderConfig, RenderedSequence, plan_sequence, render_sequence, sequence_name
from .shading import Renderer, default_intrinsics
from .walk import NoFreeSpaceError

__all__ = ["FORMAT", "FORMAT_VERSION", "NoFreeSpaceError", "RenderConfig", "RenderLayoutError", "RenderedSequence",
           "Renderer", "Scene", "SceneError", "default_intrinsics", "load_mesh_scene", "plan_sequence",
           "procedural_room", "render_dataset", "render_sequence", "sequence_name", "write_sequence"]
