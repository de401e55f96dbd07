"""What a task is: the fields of one row of the task table (:mod:`egom2p.tasks.table`).

A :class:`TaskSpec` says everything ``predict``, ``eval``, the notebooks and the benchmarks need to
know about a task, so none of them branches on a task's name: what conditions the model and what it
generates (``inputs``, ``target``, ``preset``), how a long video is cut into windows and stitched
back, how ground truth is taken from a standard clip (``truth``) and scored (``score``, through
:mod:`egom2p.metrics`), which baselines stand beside the model, how results are written and plotted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import EgoM2PError
from ..metrics import DEFAULT_ALIGNMENT, DEPTH_EVAL_RANGE_M


class TaskInputError(EgoM2PError, ValueError):
    """Input a task cannot use; the message names the file and the problem."""


@dataclass(frozen=True)
class Column:
    """One metric of a task's table."""

    key: str  # key in the score dicts and the JSON rows
    header: str  # table header
    fmt: str  # format of a value
    lower_is_better: bool
    unit: str = ""  # suffix of the tokenizer-evaluation key: f"{modality}_{key}_{unit}" (e.g. cam_ate_m)


@dataclass
class ScoreContext:
    """Settings shared by every row of one evaluation (the model, the ceiling and the baselines)."""

    alignment: str = DEFAULT_ALIGNMENT  # camera trajectories (egom2p.metrics.ALIGNMENTS)
    depth_range: tuple[float, float] = DEPTH_EVAL_RANGE_M  # metres; fixed, never from ground truth
    weights_dir: Any = None  # LPIPS / FVD weights (egom2p.perceptual)
    notes: list[str] = field(default_factory=list)  # said once under the table
    cache: dict = field(default_factory=dict)  # loaded networks etc.

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


@dataclass(frozen=True)
class Baseline:
    """A reference method scored beside the model on the same clips with the same metric code.

    ``predict(clip, state, size)`` returns a prediction in the task's output format (what
    ``TaskSpec.postprocess`` makes of the model's decoded target). ``fit(training_clips, size)``
    makes ``state`` from training clips (``None``: the baseline needs no training data); ``needs``
    are the modalities the training clips must have (and that are decoded for the fit).
    """

    name: str
    predict: Callable[[Any, Any, int], Any]
    fit: Callable[[list, int], Any] | None = None
    needs: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class TaskSpec:
    """One task of the table."""

    name: str
    inputs: tuple[str, ...]  # conditioning modalities
    target: str  # generated modality
    preset: str  # generation preset (egom2p.generate)
    description: str
    # Window stride on the 30 FPS timeline (frames). Per-frame tasks: camera windows share one frame
    # (59) to chain their poses; gaze needs no overlap. Token-frame tasks (video_output): starts lie on
    # the 0.5 s grid (multiples of 15 frames) so the 8 FPS token frames of all windows fall on one
    # even 8 FPS timeline; depth windows share 4 token frames (45) to put them on one scale.
    stride: int
    video_output: bool  # True: outputs at the 16 token frames (8 FPS) of each window; False: per 30 FPS frame
    align_windows: bool  # video_output: fit each later window's scale and shift to the frames it shares
    columns: tuple[Column, ...]
    main_metrics: tuple[str, ...]  # the keys compared with the best baseline
    truth: Callable[[Any, int], Any]  # (clip, image size) -> ground truth for ``score``
    score: Callable[[Any, Any, ScoreContext], dict | None]  # (prediction, truth, ctx) -> metrics; None: clip unscorable
    postprocess: Callable[[Any], Any]  # decoded target of one window -> the task's output
    baselines: tuple[Baseline, ...]
    stitch: Callable  # (window outputs, starts, num_frames) -> (prediction, 30 FPS frame index)
    write: Callable  # (TaskResult, out_dir) -> {kind: path}
    plot: Callable  # (clip, {name: prediction}, truth, title) -> matplotlib figure
    describe: Callable[[ScoreContext], list[str]]  # notes on the metrics, printed under the table
    set_score: Callable | None = None  # (predictions, truths, ctx) -> set-level metrics (e.g. FVD)
    settings: tuple[str, ...] = ()  # the ScoreContext fields the scores depend on (reported with the numbers)
    clip_filter: Callable[[dict], bool] | None = None  # clips-index row -> usable ground truth?
    gt_note: str = ""  # said when the filter removes clips

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.inputs) + (self.target,)

    def column(self, key: str) -> Column:
        for c in self.columns:
            if c.key == key:
                return c
        raise KeyError(key)
