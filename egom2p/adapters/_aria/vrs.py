"""Images of a Project Aria VRS recording (see :mod:`egom2p.adapters.aria`)."""

from __future__ import annotations

import numpy as np

from ..base import SourceError, require_file
from .mps import RGB_STREAM, _quiet


class VrsImageStream:
    """One image stream of an Aria VRS read through projectaria-tools (device-time timestamps)."""

    def __init__(self, vrs_path, stream: str = RGB_STREAM):
        _quiet()
        from projectaria_tools.core import data_provider
        from projectaria_tools.core.sensor_data import TimeDomain
        from projectaria_tools.core.stream_id import StreamId

        self.path = str(require_file(vrs_path, "VRS recording", nonempty=True))
        self.provider = data_provider.create_vrs_data_provider(self.path)
        if self.provider is None:
            raise SourceError(self.path, "not a readable Aria VRS recording")
        self.stream_id = StreamId(stream)
        if self.stream_id not in self.provider.get_all_streams():
            raise SourceError(self.path, f"VRS has no stream {stream}")
        self.label = self.provider.get_label_from_stream_id(self.stream_id)
        self.t_ns = np.asarray(self.provider.get_timestamps_ns(self.stream_id, TimeDomain.DEVICE_TIME), np.int64)
        if len(self.t_ns) == 0:
            raise SourceError(self.path, f"VRS stream {stream} has no frame")

    def __len__(self) -> int:
        return len(self.t_ns)

    def timecode_to_device_ns(self, t_ns) -> np.ndarray:
        """TIME_CODE ns -> device time ns (HOT3D timestamps); SourceError when the VRS has no time code."""
        from projectaria_tools.core.sensor_data import TimeDomain

        try:  # projectaria raises RuntimeError when the stream has no time-code records
            self.provider.get_timestamps_ns(self.stream_id, TimeDomain.TIME_CODE)
            return np.array([self.provider.convert_from_timecode_to_device_time_ns(int(t)) for t in np.ravel(t_ns)],
                            np.int64)
        except Exception as e:
            raise SourceError(self.path, f"VRS has no time-code mapping, cannot synchronise ({e})") from e

    def read(self, indices) -> np.ndarray:
        frames = []
        for i in np.asarray(indices, dtype=np.int64):
            data = self.provider.get_image_data_by_index(self.stream_id, int(i))
            if data is None or data[0] is None:
                raise SourceError(self.path, f"VRS stream {self.stream_id} frame {i} unreadable")
            frames.append(data[0].to_numpy_array())
        return np.stack(frames)

    def device_calibration(self):
        return self.provider.get_device_calibration()
