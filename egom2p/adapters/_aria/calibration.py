"""Project Aria camera calibration plumbing: VRS device calibration, rescaled online RGB calibration, Fisheye624
intrinsics, gaze reprojection and ray-distance -> z-depth (see :mod:`egom2p.adapters.aria`)."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from ... import geometry as geo
from ..base import SourceError, require_file
from .mps import ONLINE_RGB_SIZE, RGB_LABEL, _quiet


def vrs_device_calibration(vrs_path):
    """The factory DeviceCalibration stored in an Aria VRS (with the CAD CPF)."""
    _quiet()
    from projectaria_tools.core import data_provider

    p = require_file(vrs_path, "Aria VRS recording", nonempty=True)
    provider = data_provider.create_vrs_data_provider(str(p))
    if provider is None:
        raise SourceError(p, "not a readable Aria VRS recording")
    calib = provider.get_device_calibration()
    if calib is None:
        raise SourceError(p, "VRS recording has no device calibration")
    return calib


def camera_calibration_json(calib) -> dict:
    """One CameraCalibration as the JSON entry of an Aria device calibration (``CameraCalibrations[]``)."""
    T = calib.get_transform_device_camera().to_matrix()
    q = geo.matrix_to_quat(T[:3, :3], order="wxyz")
    w, h = (int(v) for v in calib.get_image_size())
    return {
        "Calibrated": True,
        "ConfigData": {"ImageHeight": h, "ImageWidth": w, "MaxSolidAngle": float(calib.get_max_solid_angle())},
        "Label": calib.get_label(),
        "Projection": {"Name": "FisheyeRadTanThinPrism", "Params": [float(v) for v in calib.get_projection_params()],
                       "Description": "fx, cx, cy, k_0, k_1, k_2, k_3, k_4, k_5, p_0, p_1, s_0, s_1, s_2, s_3"},
        "SerialNumber": calib.get_serial_number() or "",
        "T_Device_Camera": {"Translation": [float(v) for v in T[:3, 3]],
                            "UnitQuaternion": [float(q[0]), [float(q[1]), float(q[2]), float(q[3])]]},
    }


def device_calibration_for_cameras(cameras, subtype: str = "DVT-S"):
    """A DeviceCalibration holding ``cameras`` with the Gen1 CAD extrinsics of ``subtype`` (for the
    central pupil frame), origin = left SLAM camera. Used when the data ships no VRS calibration."""
    from projectaria_tools.core import calibration

    js = {
        "AlgorithmName": "egom2p", "AlgorithmVersion": "1", "CalibrationSource": "OnlineCalibration",
        "DeviceClassInfo": {"BuildVersion": subtype, "DeviceClass": "Aria"},
        "FileFormat": {"Tags": [], "Timestamp": "", "UnixTime": 0, "Version": 3},
        "OriginSpecification": {"ChildLabel": "camera-slam-left", "Type": "Custom"}, "Serial": "",
        "CameraCalibrations": [camera_calibration_json(c) for c in cameras],
        "ImuCalibrations": [], "MagCalibrations": [], "BaroCalibrations": [], "MicCalibrations": [],
    }
    dc = calibration.device_calibration_from_json_string(json.dumps(js))
    if dc is None:
        raise SourceError("<online calibration>", "could not build a device calibration from the cameras")
    return dc


def rescale_rgb_calibration(calib, width: int, height: int):
    """An RGB CameraCalibration rescaled to a ``width`` x ``height`` image.

    MPS online calibration is at the 2880x2880 sensor resolution: it is first mapped to the 1408x1408
    recording image with projectaria-tools' canonical Gen1 transform (2x2 binning + crop), then
    scaled for downscaled videos (e.g. EgoExo4D ``downscaled/448``)."""
    from projectaria_tools.core import calibration

    w0, h0 = (int(v) for v in calib.get_image_size())
    if (w0, h0) == ONLINE_RGB_SIZE and (width, height) != ONLINE_RGB_SIZE:
        calib = calibration.rescale_camera_calibration(calib, np.array([1408, 1408]), calibration.DeviceVersion.Gen1)
        w0, h0 = 1408, 1408
    if (w0, h0) == (width, height):
        return calib
    if abs(width / w0 - height / h0) > 1e-6:
        raise SourceError(calib.get_label(), f"cannot rescale a {w0}x{h0} calibration to {width}x{height}")
    return calib.rescale(np.array([width, height]), width / w0)


def upright_calibration(calib):
    """Calibration of the image rotated 90 degrees clockwise (EgoExo4D frame-aligned videos)."""
    from projectaria_tools.core import calibration

    return calibration.rotate_camera_calib_cw90deg(calib)


def fisheye624_intrinsics(calib) -> tuple[np.ndarray, np.ndarray]:
    """(fx, fy, cx, cy) and the 12 distortion parameters (k0..k5, p0, p1, s0..s3) of a Fisheye624 calibration."""
    params = np.asarray(calib.get_projection_params(), dtype=np.float64)
    if calib.get_model_name().name != "FISHEYE624" or params.size != 15:
        raise SourceError(calib.get_label(), f"expected a Fisheye624 calibration (15 params), got "
                                             f"{calib.get_model_name()} with {params.size}")
    f, cx, cy = params[:3]
    return np.array([f, f, cx, cy]), params[3:].copy()


def camera_calibration_from_params(label: str, params, T_device_camera: np.ndarray, width: int, height: int,
                                   max_solid_angle: float = np.pi / 2):
    """A Fisheye624 CameraCalibration from (f, cx, cy, 12 coeffs) or (fx, fy, cx, cy, 12 coeffs)."""
    from projectaria_tools.core import calibration
    from projectaria_tools.core.sophus import SE3

    p = [float(v) for v in params]
    if len(p) == 16:  # HOT3D Quest / clips: fx, fy, cx, cy + 12 -> single focal (hot3d QuestDataProvider)
        p = p[:1] + p[2:]
    if len(p) != 15:
        raise SourceError(label, f"Fisheye624 needs 15 or 16 parameters, got {len(p)}")
    T = SE3.from_matrix(np.asarray(T_device_camera, dtype=np.float64))
    return calibration.CameraCalibration(label, calibration.CameraModelType.FISHEYE624, np.array(p), T,
                                         int(width), int(height), None, float(max_solid_angle), "")


def gaze_pixels(yaw, pitch, depth, device_calibration, camera_calibration, label: str = RGB_LABEL) -> np.ndarray:
    """Raw-image pixels [N, 2] of gaze samples via ``mps.utils.get_gaze_vector_reprojection``.

    Depth NaN -> 1 m (projectaria-tools' default). NaN rows where the gaze is missing or does not
    project into the image."""
    from projectaria_tools.core import mps
    from projectaria_tools.core.mps.utils import get_gaze_vector_reprojection

    out = np.full((len(yaw), 2), np.nan)
    for i in range(len(yaw)):
        if not (np.isfinite(yaw[i]) and np.isfinite(pitch[i])):
            continue
        g = mps.EyeGaze()
        g.yaw, g.pitch = float(yaw[i]), float(pitch[i])
        d = float(depth[i]) if np.isfinite(depth[i]) else 1.0
        g.depth = d
        px = get_gaze_vector_reprojection(g, label, device_calibration, camera_calibration, d)
        if px is not None:
            out[i] = np.asarray(px, dtype=np.float64).reshape(2)
    return out


@lru_cache(maxsize=8)
def _ray_z(params: tuple, width: int, height: int, step: int | None = None) -> np.ndarray:
    """z-component of each pixel's unit ray [H, W]: exact (projectaria unproject) every ``step`` pixels,
    linear in between; default step = f // 100 (at least 1): 2 on the 704-pixel ASE camera (f 298),
    1.4 s once per calibration instead of 5 s, relative error <= 1.1e-4 anywhere (below the 1 mm
    depth quantisation at 1 m); exact for small images."""
    step = max(1, int(params[0] // 100)) if step is None else step
    calib = camera_calibration_from_params("ray", params, np.eye(4), width, height, max_solid_angle=np.pi)
    us = np.unique(np.r_[np.arange(0, width, step), width - 1])
    vs = np.unique(np.r_[np.arange(0, height, step), height - 1])
    grid = np.zeros((len(vs), len(us)))
    for j, v in enumerate(vs):
        for i, u in enumerate(us):
            r = np.asarray(calib.unproject_no_checks(np.array([float(u), float(v)]))).reshape(3)
            grid[j, i] = r[2] / np.linalg.norm(r)
    rows = np.stack([np.interp(np.arange(width), us, g) for g in grid])  # [len(vs), W]
    return np.stack([np.interp(np.arange(height), vs, rows[:, x]) for x in range(width)], 1)


def ray_distance_to_z(depth_ray: np.ndarray, calib) -> np.ndarray:
    """Distance along each pixel's ray [..., H, W] -> z-depth, with the fisheye ray directions."""
    w, h = (int(v) for v in calib.get_image_size())
    z = _ray_z(tuple(float(v) for v in calib.get_projection_params()), w, h)
    return (np.asarray(depth_ray, dtype=np.float64) * z).astype(np.float32)
