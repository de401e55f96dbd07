"""``egom2p view SOURCE``: clips, predictions and evaluations in 3D with rerun.io (:mod:`egom2p.view`).

    egom2p view data/clips/egogen.lance [--clip ID ... | --sequence NAME | --limit N]
    egom2p view pred/                          # an `egom2p predict` output folder (+ its input video)
    egom2p view eval/ [--limit N]              # an `egom2p eval` output folder: truth beside prediction
    ... --save out.rrd                         # write a recording instead of opening a viewer
    ... --serve [--web-port P --grpc-port G]   # a web viewer served from here (remote machines)
    ... --connect rerun+http://HOST:9876/proxy # log into a viewer that is already running
"""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("view", help="look at clips, predictions or evaluations in 3D (rerun.io)",
                       description="Show a clips table's clip or sequence, an `egom2p predict` folder or an "
                                   "`egom2p eval` folder in rerun: RGB, depth (colour-mapped and as a point "
                                   "cloud), gaze on the image, camera frustums and trajectory, truth beside "
                                   "prediction, on one 30 FPS timeline.")
    p.add_argument("source", help="clips table (DIR/<dataset>.lance), prediction folder or eval folder")
    p.add_argument("--clip", nargs="+", default=None, metavar="ID", help="clip ids to show (clips table)")
    p.add_argument("--sequence", default=None, help="show every clip of this sequence in order (clips table)")
    p.add_argument("--limit", type=int, default=None, help="the first N clips (clips table: default 1; eval: all)")
    p.add_argument("--video", default=None, help="input video of a prediction folder (default: from predict.json)")
    p.add_argument("--intrinsics", nargs=4, type=float, default=None, metavar=("FX", "FY", "CX", "CY"),
                   help="intrinsics of a prediction folder's square image (default: 90 degree field of view)")
    p.add_argument("--clips", nargs="+", default=None, help="clips tables of an eval folder (default: as evaluated)")
    p.add_argument("--depth-range", nargs=2, type=float, default=None, metavar=("NEAR", "FAR"),
                   help="metres used to show relative depth (default 0.5 10)")
    p.add_argument("--point-stride", type=int, default=4, help="back-project every N-th pixel (default 4)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--save", default=None, metavar="FILE.rrd", help="write a recording; no viewer")
    out.add_argument("--serve", action="store_true", help="serve a web viewer (prints its address) until Ctrl-C")
    out.add_argument("--connect", default=None, metavar="URL", help="send to a running viewer (rerun+http://...)")
    p.add_argument("--web-port", type=int, default=None, help="web viewer port with --serve")
    p.add_argument("--grpc-port", type=int, default=None, help="gRPC port with --serve")
    p.set_defaults(func=run_view)


def run_view(args) -> int:
    from ..view import ASSUMED_RANGE, ViewError, load_segments, save, show, summarize_rrd

    try:
        segments = load_segments(args.source, clip_ids=args.clip, sequence=args.sequence, limit=args.limit,
                                 video=args.video, intrinsics=args.intrinsics, clips=args.clips,
                                 assumed_range=tuple(args.depth_range) if args.depth_range else ASSUMED_RANGE)
    except (ViewError, OSError) as e:
        print(f"egom2p view: {e}", file=sys.stderr)
        return 2
    frames = sum(s.length for s in segments)
    print(f"egom2p view: {len(segments)} segment(s), {frames} frames at 30 FPS: " +
          ", ".join(s.label for s in segments[:5]) + (" ..." if len(segments) > 5 else ""))
    if args.save:
        path = save(segments, args.save, args.point_stride)
        ents = summarize_rrd(path)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {len(ents)} entities); open it with `rerun {path}`")
        return 0
    mode = "serve" if args.serve else "connect" if args.connect else "spawn"
    try:
        rec, where = show(segments, mode, url=args.connect, point_stride=args.point_stride, web_port=args.web_port,
                     grpc_port=args.grpc_port)
    except Exception as e:  # no display for a native viewer, port in use, viewer not reachable
        print(f"egom2p view: cannot {mode} a viewer ({type(e).__name__}: {e}); use --save FILE.rrd or --serve",
              file=sys.stderr)
        return 2
    if mode == "serve":
        print(f"serving the recording at {where} and a web viewer on port {args.web_port or 9090}; Ctrl-C stops")
        try:
            import time

            while True:  # the servers live as long as `rec`
                time.sleep(3600)
        except KeyboardInterrupt:
            del rec
            return 0
    return 0
