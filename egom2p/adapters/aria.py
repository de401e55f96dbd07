"""Shared Project Aria helpers for the Aria-family adapters (EgoExo4D, HOT3D, ADT, ASE).

Readers go through ``projectaria-tools`` wherever it has one (MPS closed-loop trajectory, eye gaze in
both CSV schemas, online calibration, VRS device calibration and images, Fisheye624 projection,
gaze reprojection); this module only adds what the adapters need around them:

* header checks that turn a wrong file into a :class:`~egom2p.adapters.SourceError` naming it;
* time-indexed streams (:class:`PoseStream`, :class:`GazeStream`) with interpolation at query
  times and an explicit maximum gap (a gap = tracking lost -> NaN);
* calibration plumbing: rescale the online RGB calibration (2880x2880 sensor) to the video size,
  build a :class:`DeviceCalibration` (for its CAD central-pupil frame) around one camera when no
  VRS ships with the data, intrinsics/distortion in the order of ``egom2p.clip`` (f, f, cx, cy |
  k0..k5, p0, p1, s0..s3);
* ray-distance -> z-depth conversion with the fisheye ray directions.

Conventions (projectaria-tools docs, "MPS output - Trajectory/Eye gaze", "Calibration"):
``T_world_device`` from MPS, quaternion x,y,z,w, device = left SLAM camera, device time in
microseconds; ``T_world_camera = T_world_device @ T_device_camera``; camera axes are OpenCV for the
raw (not upright) image. Eye gaze yaw/pitch are in the central pupil frame (CPF); the gaze point is
``depth * normalize(tan(yaw), tan(pitch), 1)`` with depth 1 m when the CSV has none.

The code lives in :mod:`egom2p.adapters._aria` (:mod:`~egom2p.adapters._aria.mps`: MPS readers, streams
and the timeline; :mod:`~egom2p.adapters._aria.calibration`; :mod:`~egom2p.adapters._aria.vrs`); this
module is its face, used by the Aria-family adapters as ``aria.NAME``.
"""

from __future__ import annotations

from ._aria.calibration import (camera_calibration_from_params, camera_calibration_json,
                                device_calibration_for_cameras, fisheye624_intrinsics, gaze_pixels,
                                ray_distance_to_z, rescale_rgb_calibration, upright_calibration,
                                vrs_device_calibration)
from ._aria.mps import (GAZE_COLUMNS_GENERAL, GAZE_COLUMNS_VERGENCE, HEADSET_COLUMNS, ONLINE_RGB_SIZE, RGB_LABEL,
                        RGB_STREAM, TRAJECTORY_COLUMNS, GazeStream, OnlineCalibrations, PoseStream, check_columns,
                        csv_header, read_closed_loop_trajectory, read_eye_gaze, read_headset_trajectory,
                        read_online_calibration, timeline)
from ._aria.vrs import VrsImageStream
from .base import SourceError, require_file

__all__ = ["GAZE_COLUMNS_GENERAL", "GAZE_COLUMNS_VERGENCE", "HEADSET_COLUMNS", "ONLINE_RGB_SIZE", "RGB_LABEL",
           "RGB_STREAM", "TRAJECTORY_COLUMNS", "GazeStream", "OnlineCalibrations", "PoseStream", "SourceError",
           "VrsImageStream", "camera_calibration_from_params", "camera_calibration_json", "check_columns",
           "csv_header", "device_calibration_for_cameras", "fisheye624_intrinsics", "gaze_pixels",
           "ray_distance_to_z", "read_closed_loop_trajectory", "read_eye_gaze", "read_headset_trajectory",
           "read_online_calibration", "require_file", "rescale_rgb_calibration", "timeline", "upright_calibration",
           "vrs_device_calibration"]
