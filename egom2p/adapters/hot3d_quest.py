"""HOT3D Quest 3 adapter: gray SLAM stream ``1201-1`` (1280x1024, Fisheye624), headset poses, no gaze/RGB.

Same two layouts as :mod:`egom2p.adapters.hot3d_aria` (HOT3D-Clips tar files in ``*_quest3/`` and
VRS sequences with ``camera_models.json``); frames come out gray [k, H, W] with ``is_gray`` set.
"""

from __future__ import annotations

from .hot3d_aria import Hot3DAdapter

ADAPTER = Hot3DAdapter("Quest3")
