"""Run by tests/test_multinode.py (and benchmarks/bench_driver.py) in a process of its own: a local
multi-node Ray cluster (a head node without CPUs, where only the driver runs, and two worker nodes
with one CPU each), curation of an egogen render and tokenization of the clips on it. Prints one line
``REPORT {json}``: who wrote the rows, the driver's and the workers' CPU seconds, bytes to the driver.

    python tests/multinode_job.py RAW OUT TOKENIZERS
"""

from __future__ import annotations

import json
import os
import sys
import time


def cluster(tmp: str):
    import ray
    from ray.cluster_utils import Cluster

    from egom2p.runner import _children, _end

    for attempt in range(4):  # a loaded machine can miss Ray's 30 s node-registration deadline
        before = _children()
        try:
            c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "temp_dir": tmp, "include_dashboard": False})
            workers = [c.add_node(num_cpus=1, object_store_memory=300 * 2**20) for _ in range(2)]
            c.wait_for_nodes(timeout=120)
            ray.init(address=c.address, log_to_driver=False)
            return c, c.head_node.node_id, [w.node_id for w in workers]
        except Exception as e:
            ray.shutdown()
            _end(_children() - before)  # what the failed attempt left running
            if "timed out" not in str(e) or attempt == 3:
                raise


def main(raw: str, out: str, tokenizers: str) -> dict:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from egom2p.curate import CurateConfig, CurationRun
    from egom2p.tokenize_config import TokenizeConfig
    from egom2p.tokenizers.stage import TokenizeRun

    c, head, workers = cluster(f"/tmp/egmn{os.getpid()}")
    try:
        run = CurationRun(CurateConfig(dataset="egogen", raw=raw, out=out, size=64, windows_per_task=1, write_batch=1),
                          executor="ray")
        run.prepare()
        chunks = run.split(run.discover())
        t0 = time.process_time()
        run.process(chunks)
        curate_driver = time.process_time() - t0  # the streaming part: workers annotate, standardize, encode, write
        s = run.summarize()
        run.close()
        curate = {"written": s.clips_written, "workers": run.written.workers, "driver_cpu_s": curate_driver,
                  "worker_cpu_s": run.runner.stats.worker_cpu_s, "bytes_to_driver": run.runner.stats.bytes_to_driver,
                  "payload_bytes": run.written.payload_bytes, "table": run.config.table_path}

        tok = TokenizeRun(TokenizeConfig(clips=[run.config.table_path], tokenizers=tokenizers,
                                         out=os.path.join(out, "tokens.lance"), commit_every=2, batch_size=2),
                          log=lambda m: None)
        tok.prepare()
        t0 = time.process_time()
        res = tok.tokenize_table(run.config.table_path)
        tok_driver = time.process_time() - t0
        tok.finalize()
        tokenize = {"added": res.added, "workers": res.workers, "driver_cpu_s": tok_driver,
                    "worker_cpu_s": tok.runner.stats.worker_cpu_s, "bytes_to_driver": tok.runner.stats.bytes_to_driver,
                    "db": tok.config.out}
        return {"head": head, "worker_nodes": workers, "driver_pid": os.getpid(), "curate": curate, "tokenize": tokenize}
    finally:
        ray.shutdown()
        c.shutdown()


if __name__ == "__main__":
    print("REPORT " + json.dumps(main(*sys.argv[1:4])), flush=True)
