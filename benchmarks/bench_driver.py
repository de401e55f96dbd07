"""Driver share of curation and tokenization on Ray: driver CPU seconds per clip against the workers' CPU
seconds per clip (the baseline, measured in the same run by the stages themselves), and the bytes
that reach the driver against the bytes of clip payload written. Targets: driver / worker CPU per
clip <= 5%; payload bytes through the driver ~0 (the driver receives one small status row per clip;
the workers write the clips and token rows).

The run curates an egogen render with a local Ray (the stages in worker processes), then tokenizes
the clips with tiny untrained tokenizers; the driver's CPU is measured around the streaming part
(the stages running, the driver tallying their status rows).

    python benchmarks/bench_driver.py [--sequences 2 --seconds 8 --stride 20 --size 128 --num-cpus 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--stride", type=int, default=20, help="frames between clip starts (default 20: overlapping clips)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import factories

    from egom2p.clips import read_clips
    from egom2p.curate import CurateConfig, CurationRun
    from egom2p.runner import start_ray
    from egom2p.tokenize_config import TokenizeConfig
    from egom2p.tokenizers.stage import TokenizeRun

    with tempfile.TemporaryDirectory(prefix="bench_driver_") as td:
        tmp = Path(td)
        raw = tmp / "raw"
        subprocess.run([str(Path(sys.executable).parent / "egom2p"), "render", "egogen", "--out", str(raw),
                        "--sequences", str(args.sequences), "--seconds", str(args.seconds), "--size", str(args.size),
                        "--seed", "0"], check=True, capture_output=True)
        os.environ.setdefault("EGOM2P_RAY_TMPDIR", f"/tmp/egbd{os.getpid()}")
        started = start_ray(args.num_cpus)
        try:
            run = CurationRun(CurateConfig(dataset="egogen", raw=str(raw), out=str(tmp / "clips"), stride=args.stride,
                                           size=args.size), executor="ray")
            run.prepare()
            chunks = run.split(run.discover())
            t0 = time.process_time()
            w = run.process(chunks)
            driver = time.process_time() - t0
            workers = run.runner.stats.worker_cpu_s
            to_driver = run.runner.stats.bytes_to_driver
            run.summarize()
            run.close()
            n = w.written
            print(f"curate: {n} clips ({args.size}x{args.size}, stride {args.stride}) on a local Ray of {args.num_cpus} CPUs")
            print(f"  workers (baseline): {workers / n * 1000:8.1f} ms CPU per clip")
            print(f"  driver:             {driver / n * 1000:8.1f} ms CPU per clip -> driver share "
                  f"{100 * driver / workers:.1f}% (target <= 5%): {'met' if driver / workers <= 0.05 else 'NOT met'}")
            print(f"  bytes to the driver: {to_driver} ({to_driver / n:.0f} per clip, status rows) for "
                  f"{w.payload_bytes} bytes of clip payload written by the workers "
                  f"({100 * to_driver / max(w.payload_bytes, 1):.2f}%); payload bytes through the driver: 0")

            clips = list(read_clips(run.config.table_path, decode_rgb=False, decode_depth=False))
            tok = factories.make_tiny_tokenizers(tmp / "tok", np.stack([c.cam for c in clips]))
            trun = TokenizeRun(TokenizeConfig(clips=[run.config.table_path], tokenizers=str(tok),
                                              out=str(tmp / "tokens.lance"), commit_every=16), log=lambda m: None)
            trun.prepare()
            t0 = time.process_time()
            res = trun.tokenize_table(run.config.table_path)
            tdriver = time.process_time() - t0
            tworkers = trun.runner.stats.worker_cpu_s
            print(f"tokenize: {res.added} clips (tiny tokenizers)")
            print(f"  workers (baseline): {tworkers / res.added * 1000:8.1f} ms CPU per clip")
            print(f"  driver:             {tdriver / res.added * 1000:8.1f} ms CPU per clip -> driver share "
                  f"{100 * tdriver / tworkers:.1f}%; {trun.runner.stats.bytes_to_driver} bytes to the driver")
        finally:
            if started:
                import ray

                ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
