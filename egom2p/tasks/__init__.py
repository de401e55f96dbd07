"""The four EgoM2P tasks on user videos and on clips: camera tracking, gaze estimation, video depth, depth -> RGB.

One table (:mod:`.table`, :data:`TASKS`) describes each task (:class:`~.spec.TaskSpec`: inputs,
target, preset, windows, ground truth, metrics, baselines, writer, plot); ``egom2p predict``,
``egom2p eval`` (:mod:`egom2p.evaluation`), the notebooks and the benchmarks read it. The package
is split along the path of a prediction:

* :mod:`.inputs` - decode and resample videos / depth to the 30 FPS timeline, plan windows,
  standard-clip arrays at the model's size;
* :mod:`.runner` - :class:`TaskRunner`: tokenize -> generate (the task's preset) -> detokenize;
* :mod:`.stitch` - windows back into one result (camera chaining, one depth scale);
* :mod:`.predict` - :func:`run_task` on a video file, ground truth beside a camera prediction;
* :mod:`.writers` - common formats (TUM, CSV, mp4, npy) and the trajectory plot;
* :mod:`.baselines` - the reference methods of the evaluation tables.
"""

from .baselines import centre_prior, constant_velocity, mean_trajectory, static_pose
from .inputs import (
    DepthInput, VideoInput, clip_inputs, cut_windows, depth_windows, load_depth, load_video, model_input, plan_windows,
    video_window_starts, window_starts,
)
from .predict import TaskResult, reference_trajectory, run_task, write_outputs
from .runner import TaskRunner, Timing, check_registries
from .spec import Baseline, Column, ScoreContext, TaskInputError, TaskSpec
from .stitch import stitch_camera, stitch_frames, stitch_video
from .table import TASKS, get_task, task_for_target
from .writers import colorize_depth, gaze_overlay, plot_trajectory, read_tum, write_gaze_csv, write_tum

__all__ = [
    "TASKS", "Baseline", "Column", "DepthInput", "ScoreContext", "TaskInputError", "TaskResult", "TaskRunner",
    "TaskSpec", "Timing", "VideoInput", "centre_prior", "check_registries", "clip_inputs", "colorize_depth",
    "constant_velocity", "cut_windows", "depth_windows", "gaze_overlay", "get_task", "load_depth", "load_video",
    "mean_trajectory", "model_input", "plan_windows", "plot_trajectory", "read_tum", "reference_trajectory",
    "run_task", "static_pose", "stitch_camera", "stitch_frames", "stitch_video", "task_for_target",
    "video_window_starts", "window_starts", "write_gaze_csv", "write_outputs", "write_tum",
]
