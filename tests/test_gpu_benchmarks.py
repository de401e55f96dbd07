"""benchmarks/gpu/run_all.sh --smoke: every GPU check at tiny sizes on the CPU, one markdown table."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(1900)  # about 2 minutes on 2 idle cores; the bound is for loaded machines
def test_run_all_smoke(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu" / "run_all.sh"), "--smoke"], capture_output=True,
                       text=True, timeout=1900, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)}, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = [ln.split("|")[1:-1] for ln in r.stdout.splitlines() if ln.startswith("| ") and "---" not in ln]
    table = {(c.strip(), m.strip()): v.strip() for c, m, v, _ in rows[1:]}
    for key in (("train_smoke", "batch4_tokens_per_s"), ("train_smoke", "attention_sdpa_step_time"),
                ("inference", "camera_model_s"), ("inference", "depth_model_s"), ("inference", "camera_s_per_seq"),
                ("tokenizer_video_fsq_tiny", "encode_clips_per_s"), ("rollingdepth", "snippets_per_s")):
        assert float(table[key]) > 0, key
    assert not [k for k in table if k[1] in ("FAILED", "skipped")], table
    assert (tmp_path / "gpu_table.md").read_text().strip() == "\n".join(
        ln for ln in r.stdout.splitlines() if ln.startswith("|"))
    assert (tmp_path / "gpu_results.jsonl").read_text().count("\n") == len(rows) - 1
