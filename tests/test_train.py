"""egom2p-train: falling loss, exact resume, --init, DB version pinning, golden losses, bad input.

Golden losses: ``tests/golden/tiny_loss.json`` holds the first losses of the tiny debug run below
(:data:`GOLDEN_OVERRIDES` on :func:`golden_db`). After a deliberate change of training numerics,
regenerate it with ``python tests/test_train.py --regen-golden`` and say so in the commit message.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from egom2p.checkpoint import load_model, read_state
from egom2p.tokendb import open_token_db, write_tokens
from egom2p.train import compose_config, lr_at, main, train

sys.path.insert(0, str(Path(__file__).parent))
from train_factories import make_token_db, structured_rows  # noqa: E402

torch.set_num_threads(1)
GOLDEN = Path(__file__).parent / "golden" / "tiny_loss.json"
GOLDEN_OVERRIDES = ["model=tiny", "seed=0", "train.steps=5", "train.batch_size=4", "data.input_budget=64",
                    "data.target_budget=64", "train.num_workers=0", "train.tensorboard=false", "train.device=cpu",
                    "train.log_every=1", "train.ckpt_every=1000"]
FAST = ["model=tiny", "train.batch_size=8", "data.input_budget=64", "data.target_budget=64", "train.num_workers=0",
        "train.tensorboard=false", "train.device=cpu", "train.log_every=1000"]


def golden_db(path) -> str:
    return make_token_db(path, parts=(("egogen", 12, ("rgb", "depth", "gaze", "cam")), ("hot3d", 4, ("rgb", "cam"))),
                         seed=0)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return make_token_db(tmp_path_factory.mktemp("tok") / "demo.lance")


def test_lr_schedule():
    assert lr_at(50, 1000, 1.0, 0.1, 100) == pytest.approx(0.5)
    assert lr_at(100, 1000, 1.0, 0.1, 100) == pytest.approx(1.0)
    assert lr_at(1000, 1000, 1.0, 0.1, 100) == pytest.approx(0.1)
    assert lr_at(550, 1000, 1.0, 0.1, 100) == pytest.approx(0.55)


def test_golden_losses(tmp_path):
    db = golden_db(tmp_path / "golden.lance")
    res = train(compose_config(GOLDEN_OVERRIDES), db, out=str(tmp_path / "run"))
    want = json.loads(GOLDEN.read_text())["losses"]
    assert len(res["losses"]) == len(want)
    for got, ref in zip(res["losses"], want):
        assert got == pytest.approx(ref, rel=1e-4), f"training numerics changed: {res['losses']} vs {want}"


def test_loss_falls_and_checkpoint_is_complete(db, tmp_path, capsys):
    rc = main(["--db", db, "--out", str(tmp_path / "run"), *FAST, "train.steps=100", "train.ckpt_every=40",
               "train.log_every=20", "optim.warmup_tokens=10000", "train.tensorboard=true"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "step     20/100" in out and "tok/s" in out and "[cam " in out and "rgb " in out
    assert "MFU n/a" in out  # no known bf16 peak for a CPU
    assert "masking over 800 samples: target " in out and "| fully masked " in out
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs]
    assert len(losses) == 100
    logged = [r for r in recs if "tokens_per_s" in r]  # the log steps: 1, 20, 40, 60, 80, 100
    assert [r["step"] for r in logged] == [1, 20, 40, 60, 80, 100]
    assert all(r["tokens_per_s"] > 0 and r["tflops_per_s"] > 0 and r["mfu"] is None for r in logged)
    for m in ("rgb", "depth", "gaze", "cam"):  # per-step masking shares; every modality a target often
        assert all(0 <= r[f"mask_full_{m}"] <= r[f"mask_target_{m}"] <= 1 for r in recs)
        assert np.mean([r[f"mask_target_{m}"] for r in recs]) > 0.3
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    print(f"loss {first:.3f} -> {last:.3f}")
    assert last < first - 0.25
    ck = tmp_path / "run" / "checkpoints"
    assert (ck / "latest").read_text().strip() == "step_0000100" and (ck / "step_0000040").is_dir()
    st = read_state(tmp_path / "run")
    assert st["step"] == 100 and st["db"]["version"] == open_token_db(db).version and st["db"]["path"] == db
    assert st["config"]["model"]["name"] == "tiny" and st["code"]["package"] and "git_sha" in st["code"]
    assert st["sampler"] == {"seed": 0, "next_batch": 100}
    assert {p.name for p in (ck / "step_0000100").iterdir()} == {"model.safetensors", "optimizer.pt", "rng.pt",
                                                                 "state.json", "manifest.json"}
    events = list((tmp_path / "run" / "tb").glob("events.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(events[0])).Reload().Tags()["scalars"]
    assert {"train/loss", "train/tokens_per_s", "train/tflops_per_s"} <= set(tags)
    model, reg, info = load_model(tmp_path / "run")
    assert reg.config == "tiny" and not model.training and info["step"] == 100


def test_resume_is_exact(db, tmp_path):
    full = train(compose_config([*FAST, "train.steps=6", "train.ckpt_every=100"]), db, out=str(tmp_path / "a"))
    part = train(compose_config([*FAST, "train.steps=6", "train.ckpt_every=3"]), db, out=str(tmp_path / "b"))
    assert part["losses"] == full["losses"]
    # resume from step 3 (drop the later checkpoint to prove it is not used)
    import shutil

    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step_0000006")
    assert main(["--db", db, "--resume", str(tmp_path / "b" / "checkpoints" / "step_0000003")]) == 0
    resumed = [json.loads(x)["loss"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert resumed == full["losses"]  # bit-identical sequence, steps 4-6 from the checkpoint


def test_init_on_another_db_and_version_pinning(db, tmp_path):
    run = train(compose_config([*FAST, "train.steps=2"]), db, out=str(tmp_path / "a"))
    other = make_token_db(tmp_path / "other.lance", parts=(("adt", 6, ("rgb", "depth", "cam")),), seed=5)
    v1 = open_token_db(other).version
    from egom2p.modalities import get_registry

    write_tokens(other, structured_rows(4, "ase", get_registry("tiny"), seed=9), registry=get_registry("tiny"))
    assert open_token_db(other).version == v1 + 1
    assert main(["--db", other, "--init", run["checkpoint"], "--out", str(tmp_path / "post"), *FAST,
                 "train.steps=2", f"data.db_version={v1}"]) == 0
    st = read_state(tmp_path / "post")
    assert st["db"]["version"] == v1 and st["init"].endswith("step_0000002") and st["db"]["num_rows"] == 6


def test_bad_input_is_refused_before_training(db, tmp_path, capsys):
    def run(*extra):
        return main(["--db", db, "--out", str(tmp_path / "bad"), *FAST, "train.steps=1", *extra])
    assert run("data.datasets=[egogen,egoexo4d]") == 2
    assert "no rows for dataset 'egoexo4d'" in capsys.readouterr().err
    assert run("data.modalities=[rgb,audio]") == 2
    assert "unknown modality" in capsys.readouterr().err
    assert run("data.input_budget=2048", "data.target_budget=2048") == 2
    assert "larger than the 700 tokens" in capsys.readouterr().err
    assert main(["--db", str(tmp_path / "nope.lance"), *FAST]) == 2
    assert "token DB not found" in capsys.readouterr().err
    assert run("model=base") == 2
    assert "does not match model" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_mfu_with_a_stated_peak(db, tmp_path, capsys):
    from egom2p.model import ModelConfig
    from egom2p.perf import forward_flops_per_sample

    assert main(["--db", db, "--out", str(tmp_path / "run"), *FAST, "train.steps=2", "train.peak_tflops=0.5",
                 "train.log_every=1"]) == 0
    assert "MFU " in capsys.readouterr().out
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        assert r["mfu"] == pytest.approx(r["tflops_per_s"] / 0.5)  # model TFLOP/s over the stated peak
        # FLOPs per token of a one-step window: 3 x forward of 8 samples of 64 + 64 slots over 1024 tokens,
        # the output head between none and every target on the 1000-code video vocabulary
        body = 3 * 8 * forward_flops_per_sample(96, ModelConfig(dim=96).mlp_hidden, 2, 2, 64, 64) / 1024
        per_token = r["tflops_per_s"] * 1e12 / r["tokens_per_s"]
        assert body < per_token <= body + 3 * 2 * 96 * 1000 * 8 * 64 / 1024


def _losses(run) -> list[float]:
    return [json.loads(x)["loss"] for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # torch.compile on a CPU: minutes on a loaded machine
def test_activation_checkpointing_and_compile_keep_the_step(db, tmp_path):
    """Activation checkpointing recomputes the same function; the compiled model computes the same losses;
    neither changes the checkpoint's parameter names."""
    from safetensors import safe_open

    base = train(compose_config([*FAST, "train.steps=3"]), db, out=str(tmp_path / "plain"))["losses"]
    ac = train(compose_config([*FAST, "train.steps=3", "train.activation_checkpointing=true"]), db,
               out=str(tmp_path / "ac"))["losses"]
    assert ac == pytest.approx(base, rel=1e-5)
    comp = train(compose_config([*FAST, "train.steps=3", "train.compile=true"]), db, out=str(tmp_path / "comp"))
    assert comp["losses"] == pytest.approx(base, rel=1e-4)
    keys = {}
    for run in ("plain", "ac", "comp"):
        with safe_open(str(tmp_path / run / "checkpoints" / "step_0000003" / "model.safetensors"), "pt") as f:
            keys[run] = set(f.keys())
    assert keys["plain"] == keys["ac"] == keys["comp"]


def test_gpu_check_smoke_with_torch_only(tmp_path):
    """The training check and the model-latency part of the inference check run where only torch is
    installed (modules of the project's other dependencies made unimportable)."""
    import subprocess

    runner = tmp_path / "bare.py"
    runner.write_text("import runpy, sys\n"
                      "for m in ('numpy', 'cv2', 'lance', 'pyarrow', 'hydra', 'omegaconf', 'yaml', 'safetensors',\n"
                      "          'decord', 'pandas', 'scipy'):\n"
                      "    sys.modules[m] = None\n"
                      "sys.argv = sys.argv[1:]\n"
                      "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    root = Path(__file__).parents[1]
    got = {}
    for script in ("check_train.py", "check_inference.py"):
        r = subprocess.run([sys.executable, str(runner), str(root / "benchmarks" / "gpu" / script), "--smoke"],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
        assert r.returncode == 0, r.stderr[-2000:]
        rows = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
        got[script] = {x["metric"]: x["value"] for x in rows}
        if script == "check_train.py":
            assert all(x["check"] == "train_smoke" and x["value"] > 0 for x in rows)
    train_rows, inference = got["check_train.py"], got["check_inference.py"]
    assert {"params", "attention_sdpa_step_time", "batch2_step_time", "batch4_step_time", "batch4_tokens_per_s",
            "batch4_model_tflops_per_s", "wall_time"} <= set(train_rows)
    assert "batch4_mfu" not in train_rows  # no known peak on a CPU
    assert inference["camera_model_s"] > 0 and inference["depth_model_s"] > 0
    assert inference["end_to_end_skipped"] == "missing numpy"


def _regen_golden():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        torch.set_num_threads(1)
        res = train(compose_config(GOLDEN_OVERRIDES), golden_db(Path(d) / "golden.lance"), out=str(Path(d) / "run"))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"overrides": GOLDEN_OVERRIDES, "losses": res["losses"],
                                  "torch": torch.__version__}, indent=1) + "\n")
    print(f"wrote {GOLDEN}: {res['losses']}")


if __name__ == "__main__":
    if "--regen-golden" in sys.argv:
        _regen_golden()
