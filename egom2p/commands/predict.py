"""``egom2p predict {camera,gaze,depth,rgb}``: run one EgoM2P task on a video and write common formats.

    egom2p predict camera --ckpt CKPT --tokenizers DIR --video IN.mp4 --out DIR
                          [--gt TRUTH.tum | --gt CLIP_ID --gt-clips TABLE]
        -> DIR/trajectory.tum.txt (timestamp tx ty tz qx qy qz qw, camera-to-world) + DIR/trajectory.png
    egom2p predict gaze   ... --video IN.mp4 --out DIR  -> DIR/gaze.csv + DIR/gaze_overlay.mp4
    egom2p predict depth  ... --video IN.mp4 --out DIR  -> DIR/depth.npy + DIR/depth.mp4 (+ depth_frames.csv)
    egom2p predict rgb    ... --depth IN.npy --out DIR  -> DIR/rgb.mp4 (+ rgb_frames.csv)

Videos of any length >= 2 s are cut into 2-second windows (see egom2p.tasks); depth input is a
.npy float array [N, H, W] (or .npz with 'depth'), metric z-depth in metres by default. ``--gt``
(camera) puts a ground-truth trajectory beside the prediction in the plot and scores it. ``--samples N``
writes the mean of N samples per window (the "mean of N samples" row of ``egom2p eval``) instead of one
decode with the task's preset; ``--expected`` the decode of each target token's expected code (one pass).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import metrics as M
from ..errors import as_user_error
from ..tasks import TASKS
from ._runner import add_runner_arguments, load_runner


def register(sub) -> None:
    p = sub.add_parser("predict", help="run a task (camera, gaze, depth, rgb-from-depth) on a video")
    p.add_argument("task", choices=sorted(TASKS), help="camera | gaze | depth | rgb (depth -> RGB)")
    add_runner_arguments(p)
    p.add_argument("--video", default=None, help="input RGB video (camera, gaze, depth)")
    p.add_argument("--depth", default=None, help="input depth video .npy/.npz [N,H,W] (rgb task)")
    p.add_argument("--depth-fps", type=float, default=30.0, help="frame rate of --depth (default 30)")
    p.add_argument("--depth-kind", default="metric", choices=("metric", "inverse"),
                   help="--depth holds metric depth in metres (default) or inverse relative depth")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--stride", type=int, default=None, help="window stride in 30 FPS frames (default: per task)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per model call")
    p.add_argument("--samples", type=int, default=1,
                   help="output the mean of N samples per window (drawn at temperature 1, averaged in the target's "
                        "geometry, as the mean row of egom2p eval) instead of one decode with the task's preset")
    p.add_argument("--expected", action="store_true",
                   help="output the decode of the expected code of each target token (one pass; the \"expected code\" "
                        "row of egom2p eval) instead of one decode with the task's preset")
    p.add_argument("--gt", default=None,
                   help="camera: ground truth to plot and score beside the prediction: a TUM file (first timestamp = "
                        "the video's first frame) or a clip id of --gt-clips (a clip of the video's sequence)")
    p.add_argument("--gt-clips", nargs="+", default=(), help="clips tables holding the --gt clip id")
    p.add_argument("--alignment", default=M.DEFAULT_ALIGNMENT, choices=M.ALIGNMENTS,
                   help="alignment of the prediction to --gt (default Sim(3))")
    p.set_defaults(func=run_predict)


def run_predict(args) -> int:
    from ..tasks import TaskInputError, reference_trajectory, run_task, write_outputs

    # errors (bad input, missing/damaged/foreign artefacts) are reported by egom2p.cli.main: one line on stderr, exit 2
    with as_user_error(ValueError):
        if args.gt is not None and TASKS[args.task].target != "cam":
            raise TaskInputError(f"--gt is for the camera task, not {args.task}")
        if args.samples < 1 or (args.expected and args.samples > 1):
            raise TaskInputError(f"--samples must be >= 1 and cannot go with --expected (got {args.samples})")
        runner = load_runner(args)
        runner = runner.sampling(args.samples) if args.samples > 1 else runner
        runner = runner.expectation() if args.expected else runner
        result = run_task(runner, args.task, video=args.video, depth=args.depth, depth_fps=args.depth_fps,
                          depth_kind=args.depth_kind, stride=args.stride, batch_size=args.batch_size)
        if args.gt is not None:
            result.reference = reference_trajectory(result.prediction, args.gt, args.gt_clips, args.alignment)
    paths = write_outputs(result, args.out)
    t = result.timing
    summary = {"task": args.task, "input": os.fspath(args.video or args.depth), "windows": len(result.starts),
               "window_starts": result.starts, "padding_frames": result.padding,
               "output_frames": int(len(result.frame_index)), "samples": args.samples,
               "expected": args.expected, "timing": t.as_dict(),
               "outputs": paths,
               "ckpt": os.fspath(args.ckpt), "tokenizers": os.fspath(args.tokenizers)}
    if result.reference is not None:
        ref = result.reference
        summary["ground_truth"] = {"source": ref["source"], "frames": int(len(ref["frames"])),
                                   "alignment": ref["alignment"], "errors": ref["errors"]}
    Path(args.out, "predict.json").write_text(json.dumps(summary, indent=2))
    print(f"egom2p predict {args.task}: {len(result.starts)} windows in {t.total_s:.2f} s "
          f"(encode {t.encode_s:.2f} s, generate {t.generate_s:.2f} s, decode {t.decode_s:.2f} s)")
    if result.reference is not None:
        e = result.reference["errors"]
        print(f"  vs ground truth {result.reference['source']} ({len(result.reference['frames'])} frames, "
              f"{result.reference['alignment']}): ATE {e['ate']:.4f} m, RTE {e['rte']:.4f} m, RRE {e['rre']:.3f} deg")
    for kind, p in paths.items():
        print(f"  {kind:<8} {p}")
    return 0
