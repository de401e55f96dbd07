"""Scenes for the synthetic egocentric renderer: procedural indoor rooms, or a user's mesh.

A :class:`Scene` is a triangle soup in a **y-up world** (metres; floor at ``floor_y``) with, per
triangle, an albedo (textures are baked per triangle: surfaces are tessellated into small quads
whose colours follow a checker / stripe / plank / noise pattern), a material index (a smooth
world-position pattern applied when shading) and an object index (what a gaze fixation lands on).

* :func:`procedural_room` builds a room from a seed: floor, four walls with a skirting band,
  ceiling with light panels, pictures on the walls, furniture (tables, shelves with books,
  cabinets, sofas, beds, chairs, plants, lamps) placed without overlap, and clutter on tables
  and on the floor.
* :func:`load_mesh_scene` reads a .ply / .obj / .off / .gltf / .glb / .stl mesh with open3d
  (vertex colours used when present), rotates it to y-up, estimates the floor and splits it into
  connected components that serve as gaze targets.

Ray-casting uses open3d's tensor ``RaycastingScene`` (built once per scene, :meth:`Scene.raycaster`).

The code lives in :mod:`.scene_model` (:class:`Scene`, :class:`SceneObject`, :class:`SceneError`),
:mod:`.mesh_builder` (:class:`MeshBuilder`), :mod:`.rooms` (:func:`procedural_room`) and
:mod:`.mesh_files` (:func:`load_mesh_scene`); this module is their common face.
"""

from __future__ import annotations

from .mesh_builder import MeshBuilder
from .mesh_files import MESH_SUFFIXES, guess_up_axis, load_mesh_scene
from .rooms import BRIGHTS, FABRICS, FLOORS, WALL_PAINTS, WOODS, RoomConfig, procedural_room
from .scene_model import PATTERN_NONE, PATTERN_STRIPES, PATTERN_WAVES, Scene, SceneError, SceneObject

__all__ = ["BRIGHTS", "FABRICS", "FLOORS", "MESH_SUFFIXES", "PATTERN_NONE", "PATTERN_STRIPES", "PATTERN_WAVES",
           "WALL_PAINTS", "WOODS", "MeshBuilder", "RoomConfig", "Scene", "SceneError", "SceneObject", "guess_up_axis",
           "load_mesh_scene", "procedural_room"]
