"""Typed configs (egom2p.config): egom2p-train and `egom2p tokenizer train` refuse a wrong type or an
unknown key before anything is loaded, with one line naming the key and the expected type; both print
their composed config without a database; the config a run saves is the typed one."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from egom2p.config import ConfigError, tokenizer_config
from egom2p.train import compose_config, main, run_steps, tokens_per_step, train

sys.path.insert(0, str(Path(__file__).parent))
from train_factories import make_token_db  # noqa: E402

BIN = Path(sys.executable).parent
FAST = ["model=tiny", "train.batch_size=4", "data.input_budget=32", "data.target_budget=32", "train.num_workers=0",
        "train.tensorboard=false", "train.device=cpu", "train.log_every=1000"]


def _cli(*args, cmd="egom2p-train"):
    return subprocess.run([str(BIN / cmd), *args], capture_output=True, text=True, timeout=120)


# ---- egom2p-train ----------------------------------------------------------------------------------


def test_train_bad_type_fails_before_loading(tmp_path):
    missing_db = tmp_path / "not_there.lance"  # never opened: the config is refused first
    r = _cli("--db", str(missing_db), "model=tiny", "train.steps=abc")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == ["egom2p-train: error: train.steps='abc': expected int or null"], r.stderr
    assert "Traceback" not in r.stderr and not r.stdout
    r = _cli("train.steps=abc")  # no --db at all: still the key, not the missing flag
    assert r.returncode == 2 and r.stderr.strip().splitlines() == lines


def test_train_type_errors_name_the_key_and_type(capsys):
    for override, want in (("optim.lr=fast", "optim.lr='fast': expected float"),
                           ("train.precision=fp8", "train.precision='fp8': expected one of auto|bf16|fp32"),
                           ("train.compile=maybe", "train.compile='maybe': expected bool (true|false)"),
                           ("data.alphas=[1,x]", "data.alphas[1]='x': expected float"),
                           ("train.total_tokens=lots", "train.total_tokens='lots': expected float or null")):
        assert main(["--db", "nowhere.lance", "model=tiny", override]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"egom2p-train: error: {want}", err


def test_train_unknown_key_fails_before_loading(capsys):
    assert main(["--db", "nowhere.lance", "model=tiny", "train.stepz=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("egom2p-train: error: unknown key train.stepz; known keys in train: steps, total_tokens")
    assert "\n" not in err
    assert main(["--db", "nowhere.lance", "+optim.momentum=0.9"]) == 2  # adding a key is refused too
    assert "unknown key optim.momentum" in capsys.readouterr().err
    assert main(["--db", "nowhere.lance", "model=huge"]) == 2
    assert "Could not find 'model/huge'; Available options in 'model': base, tiny" in capsys.readouterr().err
    assert main(["--db", "nowhere.lance", "model.heads=5"]) == 2  # the model's own checks, before loading too
    assert "not divisible by heads 5" in capsys.readouterr().err


def test_print_config_without_db_is_typed():
    r = _cli("model=tiny", "train.total_tokens=1e6", "train.steps=null", "--print-config")
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["model"]["name"] == "tiny" and cfg["train"]["batch_size"] == 16  # interpolation resolved
    assert cfg["train"]["total_tokens"] == 1e6 and cfg["train"]["steps"] is None
    for key in ("precision", "attention", "parallel", "activation_checkpointing", "compile", "tf32", "peak_tflops"):
        assert key in cfg["train"]  # every schema key, with its default
    assert cfg["optim"]["fused"] is None and cfg["data"]["db_version"] is None


def test_paper_preset_is_the_release_recipe():
    cfg = compose_config(["preset=paper"])
    assert cfg.model.name == "base" and cfg.model.dim == 768 and cfg.model.encoder_layers == 12
    assert cfg.data.input_budget == cfg.data.target_budget == 2048 and cfg.train.batch_size == 1024
    assert cfg.optim.lr == pytest.approx(4e-4) and cfg.optim.min_lr == 0 and cfg.optim.warmup_tokens == 10e9
    assert list(cfg.optim.betas) == [0.9, 0.95] and cfg.optim.weight_decay == 0.05 and cfg.optim.grad_clip == 1.0
    assert cfg.train.total_tokens == 500e9 and cfg.train.precision.value == "bf16"
    assert tokens_per_step(cfg) == 1024 * 4096
    assert run_steps(cfg) == 119210  # ceil(500e9 / 4,194,304)
    assert run_steps(compose_config(["preset=paper", "train.total_tokens=400e9"])) == 95368  # the paper's 400B


def test_steps_and_total_tokens_exclude_each_other(capsys):
    with pytest.raises(ConfigError, match="both set the run length"):
        compose_config(["model=tiny", "train.total_tokens=1e6"])  # train.steps keeps its default 1000
    assert main(["--db", "nowhere.lance", "preset=paper", "train.steps=10"]) == 2
    assert "train.steps=10 and train.total_tokens=5e+11 both set" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="set train.steps or train.total_tokens"):
        compose_config(["model=tiny", "train.steps=null"])


def test_total_tokens_sets_the_run_length_and_saved_config_is_typed(tmp_path):
    db = make_token_db(tmp_path / "tok.lance")
    cfg = compose_config([*FAST, "train.steps=null", "train.total_tokens=1000"])  # 256 tokens per step
    res = train(cfg, db, out=str(tmp_path / "run"))
    assert len(res["losses"]) == 4  # ceil(1000 / 256)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["total_tokens"] == 1000.0 and saved["train"]["steps"] is None
    assert saved["train"]["precision"] == "auto" and "activation_checkpointing" in saved["train"]
    state = json.loads((tmp_path / "run" / "checkpoints" / "step_0000004" / "state.json").read_text())
    assert state["config"] == saved and state["tokens"] == 1024
    # a resumed run re-reads that config typed: a bad override is refused naming the key
    assert main(["--db", db, "--resume", str(tmp_path / "run"), "train.total_tokens=abc"]) == 2


# ---- egom2p tokenizer train ----------------------------------------------------------------------------


def test_tokenizer_config_is_typed():
    cfg = tokenizer_config("video", ["steps=7", "model.channels=8", "model.levels=[8,5,5]", "lr=3e-3"])
    assert cfg.steps == 7 and cfg.batch_size == 4 and cfg.lr == 3e-3
    assert cfg.model == {"channels": 8, "levels": [8, 5, 5]}  # only what was set overrides the preset
    assert tokenizer_config("gaze", []).batch_size == 16
    with pytest.raises(ConfigError, match=r"^steps='many': expected int$"):
        tokenizer_config("cam", ["steps=many"])
    with pytest.raises(ConfigError, match=r"^model.depth='deep': expected int or null$"):
        tokenizer_config("cam", ["model.depth=deep"])
    with pytest.raises(ConfigError, match=r"^unknown key model.channels; known keys in model: in_channels"):
        tokenizer_config("gaze", ["model.channels=8"])  # a video field on a VQ-VAE


def test_tokenizer_cli_bad_type_unknown_key_and_print_config(tmp_path):
    missing = str(tmp_path / "none.lance")  # never opened
    r = _cli("tokenizer", "train", "gaze", "--clips", missing, "--out", str(tmp_path / "tok"), "steps=abc",
             cmd="egom2p")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "egom2p tokenizer train: error: steps='abc': expected int"], r.stderr
    r = _cli("tokenizer", "train", "video", "--clips", missing, "--out", str(tmp_path / "tok"), "stepz=3",
             cmd="egom2p")
    assert r.returncode == 2 and "unknown key stepz; known keys: registry, size, steps" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "tok").exists()
    r = _cli("tokenizer", "train", "cam", "--print-config", "steps=9", "model.depth=3", cmd="egom2p")
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["steps"] == 9 and cfg["batch_size"] == 16 and cfg["model"] == {"depth": 3}
