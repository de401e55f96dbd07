"""``egom2p predict {camera,gaze,depth,rgb}``: run one EgoM2P task on a video and write common formats.

    egom2p predict camera --ckpt CKPT --tokenizers DIR --video IN.mp4 --out DIR
        -> DIR/trajectory.tum.txt (timestamp tx ty tz qx qy qz qw, camera-to-world) + DIR/trajectory.png
    egom2p predict gaze   ... --video IN.mp4 --out DIR  -> DIR/gaze.csv + DIR/gaze_overlay.mp4
    egom2p predict depth  ... --video IN.mp4 --out DIR  -> DIR/depth.npy + DIR/depth.mp4 (+ depth_frames.csv)
    egom2p predict rgb    ... --depth IN.npy --out DIR  -> DIR/rgb.mp4 (+ rgb_frames.csv)

Videos of any length >= 2 s are cut into 2-second windows (see egom2p.tasks); depth input is a
.npy float array [N, H, W] (or .npz with 'depth'), metric z-depth in metres by default.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import as_user_error
from ..integrity import ALLOW_FOREIGN_FLAG
from ..tasks import TASKS, TaskRunner, run_task, write_outputs


def register(sub) -> None:
    p = sub.add_parser("predict", help="run a task (camera, gaze, depth, rgb-from-depth) on a video")
    p.add_argument("task", choices=sorted(TASKS), help="camera | gaze | depth | rgb (depth -> RGB)")
    p.add_argument("--ckpt", required=True, help="training checkpoint (run directory or step directory)")
    p.add_argument("--tokenizers", required=True, help="directory with rgb/ depth/ gaze/ cam/ tokenizers")
    p.add_argument("--video", default=None, help="input RGB video (camera, gaze, depth)")
    p.add_argument("--depth", default=None, help="input depth video .npy/.npz [N,H,W] (rgb task)")
    p.add_argument("--depth-fps", type=float, default=30.0, help="frame rate of --depth (default 30)")
    p.add_argument("--depth-kind", default="metric", choices=("metric", "inverse"),
                   help="--depth holds metric depth in metres (default) or inverse relative depth")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--stride", type=int, default=None, help="window stride in 30 FPS frames (default: per task)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per model call")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument(ALLOW_FOREIGN_FLAG, action="store_true",
                   help="use tokenizers other than those the checkpoint was trained with (refused by default)")
    p.set_defaults(func=run_predict)


def run_predict(args) -> int:
    # errors (bad input, missing/damaged/foreign artefacts) are reported by egom2p.cli.main: one line on stderr, exit 2
    with as_user_error(ValueError):
        runner = TaskRunner.load(args.ckpt, args.tokenizers, device=args.device, seed=args.seed,
                                 allow_foreign_tokenizers=args.allow_foreign_tokenizers)
        result = run_task(runner, args.task, video=args.video, depth=args.depth, depth_fps=args.depth_fps,
                          depth_kind=args.depth_kind, stride=args.stride, batch_size=args.batch_size)
    paths = write_outputs(result, args.out)
    t = result.timing
    summary = {"task": args.task, "input": os.fspath(args.video or args.depth), "windows": len(result.starts),
               "window_starts": result.starts, "output_frames": int(len(result.frame_index)),
               "timing": t.as_dict(), "outputs": paths, "ckpt": os.fspath(args.ckpt),
               "tokenizers": os.fspath(args.tokenizers)}
    Path(args.out, "predict.json").write_text(json.dumps(summary, indent=2))
    print(f"egom2p predict {args.task}: {len(result.starts)} windows in {t.total_s:.2f} s "
          f"(encode {t.encode_s:.2f} s, generate {t.generate_s:.2f} s, decode {t.decode_s:.2f} s)")
    for kind, p in paths.items():
        print(f"  {kind:<8} {p}")
    return 0
