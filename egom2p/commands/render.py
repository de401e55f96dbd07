"""``egom2p render egogen --out DIR --sequences N --seconds S --seed K [--size 256] [--scene MESH] [--preview]``.

Renders synthetic egocentric sequences (the ``egogen`` source and the project's default data) in
EgoGen's conventions; see :mod:`egom2p.render.layout` and ``datasets/egogen.yaml``.
"""

from __future__ import annotations

import sys
import time


def register(sub) -> None:
    p = sub.add_parser("render", help="render synthetic egocentric data (the egogen source)",
                       description="Render walking-person egocentric sequences (RGB, metric depth, OpenGL "
                                   "camera-to-world poses, intrinsics, 3D gaze) at 30 FPS.")
    p.add_argument("source", choices=["egogen"], help="what to render (egogen: the synthetic EgoGen-style source)")
    p.add_argument("--out", required=True, help="output folder (created; re-running the same render skips done sequences)")
    p.add_argument("--sequences", type=int, default=2, help="number of sequences (default 2)")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds per sequence at 30 FPS (default 4)")
    p.add_argument("--seed", type=int, default=0, help="render seed; sequence i is determined by (seed, i)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (square, default 256)")
    p.add_argument("--scene", default=None, help="a scene mesh (.ply/.obj/.off/.gltf/.glb/.stl, metres) instead of "
                                                 "procedural rooms")
    p.add_argument("--scene-up", default="auto", choices=["auto", "x", "y", "z", "-x", "-y", "-z"],
                   help="up axis of --scene (default: guessed from the mesh)")
    p.add_argument("--rgb-format", default="mp4", choices=["mp4", "png"], help="RGB as H.264 mp4 (default) or PNG frames")
    p.add_argument("--preview", action="store_true", help="also write preview.png contact sheets per sequence")
    p.add_argument("--jobs", type=int, default=1, help="sequences rendered in parallel worker processes (default 1)")
    p.add_argument("--threads", type=int, default=1, help="ray-casting threads per sequence (default 1; 0 = all cores)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import as_user_error
    from ..render import RenderConfig, render_dataset

    if args.sequences < 1 or args.seconds <= 0 or args.size < 8:
        print("egom2p render: --sequences must be >= 1, --seconds > 0 and --size >= 8", file=sys.stderr)
        return 2
    config = RenderConfig(seconds=args.seconds, width=args.size, height=args.size, scene=args.scene,
                          scene_up=args.scene_up, nthreads=args.threads)
    from pathlib import Path

    from ..render.layout import is_complete
    from ..render.sequence import sequence_name

    done_before = {sequence_name(args.seed, i) for i in range(args.sequences)
                   if is_complete(Path(args.out) / sequence_name(args.seed, i))}
    t0 = time.perf_counter()
    # SceneError / RenderLayoutError (bad mesh, a different render in --out) are reported by egom2p.cli.main
    with as_user_error(ValueError):
        dirs = render_dataset(args.out, args.sequences, seed=args.seed, preview=args.preview,
                              rgb_format=args.rgb_format, config=config, jobs=max(1, args.jobs))
    dt = time.perf_counter() - t0
    print(f"rendered {len(dirs)} sequences of {args.seconds:g} s at {args.size}x{args.size} into {args.out} in {dt:.1f} s")
    for d in dirs:
        notes = (["already complete, skipped"] if d.name in done_before else []) + (["preview.png"] if args.preview else [])
        print(f"  {d}" + (f"  ({', '.join(notes)})" if notes else ""))
    return 0
