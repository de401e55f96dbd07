"""One typed config per flow: CLI flags, flow parameters and prefect.yaml come from it; bad input is one
line on stderr with exit code 2, reported before Prefect, Ray (or torch) are even imported."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from egom2p.adapters import SOURCE_DATASETS, get_adapter
from egom2p.cli import build_parser
from egom2p.curate.config import MODEL_ANNOTATORS, CurateConfig, CurateError, take_lock
from egom2p.flows import deployments
from egom2p.runconfig import ConfigError, deployment_parameters, from_args
from egom2p.tokenize_config import TokenizeConfig

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIGS = {"curate": CurateConfig, "tokenize": TokenizeConfig}


def fields(cls) -> dict:
    return {f.name: (f.default if f.default is not dataclasses.MISSING else
                     f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
            for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("command", ["curate", "tokenize"])
def test_cli_flags_and_flow_parameters_are_the_config_fields(command):
    from prefect.utilities.callables import parameter_schema

    from egom2p.commands._flows import load_flow

    want = fields(CONFIGS[command])
    sub = next(a for a in build_parser(only=command)._actions if a.dest == "command").choices[command]
    dests = {a.dest: a.default for a in sub._actions if a.dest != "help"}
    assert set(dests) == set(want)
    for name, default in want.items():  # flag defaults are the config's (dict options: repeatable KEY=VALUE)
        if default != "required" and not isinstance(default, dict):
            assert dests[name] == default, name
    schema = parameter_schema(load_flow(command)).model_dump()
    assert set(schema["properties"]) == set(want)
    assert set(schema["required"]) == {n for n, d in want.items() if d == "required"}
    for name, default in want.items():
        if default != "required":
            assert schema["properties"][name]["default"] == default, name
        assert schema["properties"][name].get("description"), name  # the help text, shown in the Prefect UI


def test_write_interval_and_windows_per_task_reach_every_entry_point():
    args = build_parser(only="curate").parse_args(
        ["curate", "egogen", "--raw", "R", "--out", "O", "--write-interval-s", "5", "--windows-per-task", "2",
         "--depth-checkpoint", "C", "--depth-option", "preset=fast", "--depth-option", "batch_size=4"])
    cfg = from_args(CurateConfig, args)
    assert (cfg.write_interval_s, cfg.windows_per_task) == (5.0, 2)
    assert cfg.depth_options == {"preset": "fast", "batch_size": 4, "checkpoint": os.path.abspath("C")}
    assert (cfg.raw, cfg.out) == (os.path.abspath("R"), os.path.abspath("O"))  # Ray workers run elsewhere
    from egom2p.flows.curate import curate

    params = curate.validate_parameters({"dataset": "egogen", "raw": "R", "out": "O", "write_interval_s": "5",
                                         "windows_per_task": 2})
    assert (params["write_interval_s"], params["windows_per_task"]) == (5.0, 2)
    with pytest.raises(ConfigError, match=r"write_interval_s \(--write-interval-s\) must be positive"):
        CurateConfig(dataset="egogen", raw="R", out="O", write_interval_s=0)
    with pytest.raises(ConfigError, match="differs from depth_options"):
        CurateConfig(dataset="egogen", raw="R", out="O", depth_checkpoint="A", depth_options={"checkpoint": "B"})


def test_prefect_yaml_is_generated_from_the_configs():
    import yaml

    assert (ROOT / "prefect.yaml").read_text() == deployments.render(), \
        "prefect.yaml is out of date: run python -m egom2p.flows.deployments"
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert set(by_name) == set(SOURCE_DATASETS) | {"default"}
    for d in SOURCE_DATASETS:
        assert by_name[d]["entrypoint"] == "egom2p.flows.curate:curate"
        assert by_name[d]["parameters"] == {"dataset": d, "raw": f"data/raw/{d}", "out": "data/clips"}
        assert by_name[d]["parameters"] == deployment_parameters(CurateConfig, dataset=d)
    assert by_name["default"]["entrypoint"] == "egom2p.flows.tokenize:tokenize"
    assert by_name["default"]["parameters"] == deployment_parameters(TokenizeConfig)
    env = spec["definitions"]["work_pools"]["local"]["job_variables"]["env"]
    assert env["EGOM2P_DEPLOY_RAY_ADDRESS"] == "{{ $RAY_ADDRESS }}" and "EGOM2P_DEPLOY_AWS_ENDPOINT" in env
    assert deployments.main(["--check"]) == 0


def test_every_deployment_runs_or_fails_fast_naming_what_it_needs(tmp_path, monkeypatch):
    """With prefect.yaml's parameters (relative to an empty working directory), the flow's first step
    names the parameter to give; the README lists the same needs per dataset."""
    monkeypatch.chdir(tmp_path)
    readme = (ROOT / "README.md").read_text()
    for d in SOURCE_DATASETS:
        params = deployment_parameters(CurateConfig, dataset=d)
        needs = deployments.needed_parameters(d)
        assert needs == (["depth_checkpoint"] if get_adapter(d).default_depth in MODEL_ANNOTATORS else [])
        with pytest.raises(CurateError) as e:
            CurateConfig(**params).check()
        assert ("depth_checkpoint (--depth-checkpoint)" if needs else "raw (--raw)") in str(e.value), d
        row = next(line for line in readme.splitlines() if line.startswith(f"| `curate/{d}`"))
        assert all(n in row for n in needs) and ("depth_checkpoint" in row) == bool(needs), row
        if needs:  # given the checkpoint folder, the next missing thing is named
            (tmp_path / "ckpt").mkdir(exist_ok=True)
            with pytest.raises(CurateError, match=r"raw \(--raw\)"):
                CurateConfig(**params, depth_checkpoint=str(tmp_path / "ckpt")).check()
    with pytest.raises(ConfigError, match=r"clips \(--clips\): .*/data/clips/egogen.lance: clips table not found"):
        TokenizeConfig(**deployment_parameters(TokenizeConfig)).check()
    assert "| `tokenize/default`" in readme


def test_deployment_env_is_applied_when_resolved(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "worker:6379")
    monkeypatch.setenv("EGOM2P_DEPLOY_RAY_ADDRESS", "{{ $RAY_ADDRESS }}")  # unset where `prefect deploy` ran
    monkeypatch.setenv("EGOM2P_DEPLOY_AWS_ENDPOINT", "http://127.0.0.1:9000")
    monkeypatch.setenv("EGOM2P_DEPLOY_AWS_REGION", "")
    monkeypatch.delenv("AWS_REGION", raising=False)
    deployments.apply_deployment_env()
    assert os.environ["RAY_ADDRESS"] == "worker:6379"  # the worker's own value stays
    assert os.environ["AWS_ENDPOINT"] == "http://127.0.0.1:9000" and "AWS_REGION" not in os.environ
    assert not [k for k in os.environ if k.startswith("EGOM2P_DEPLOY_")]


# ------------------------------------------------------------------------------------ fail fast
DRIVER = """
import contextlib, io, json, sys
from egom2p.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    out.append({"rc": rc, "stderr": err.getvalue()})
heavy = sorted(m for m in ("prefect", "ray", "torch", "lance") if m in sys.modules)
print(json.dumps({"results": out, "imported": heavy}))
"""


def run_cases(cases: list[list[str]]) -> dict:
    """Run ``egom2p`` argv lists one after the other in one fresh process; what each printed and returned,
    and which heavy packages the process imported."""
    p = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def egogen_raw(tmp_path_factory) -> Path:
    from egom2p.render import render_dataset

    raw = tmp_path_factory.mktemp("egogen") / "raw"
    render_dataset(raw, sequences=1, seconds=2.0, seed=0, size=32, progress=False)
    return raw


def test_curate_bad_input_is_one_line_before_prefect_or_ray(tmp_path, egogen_raw):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    lock = take_lock(str(Path(CurateConfig(dataset="egogen", raw="", out=str(out)).lock_path)))  # a run in progress
    ok = ["--raw", str(egogen_raw), "--out", str(tmp_path / "o2")]
    cases = {
        "raw (--raw): raw root": ["curate", "egogen", "--raw", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")],
        "unknown dataset 'egogne'": ["curate", "egogne", *ok],
        "stride (--stride) must be positive": ["curate", "egogen", *ok, "--stride", "0"],
        "size (--size) must be a positive even": ["curate", "egogen", *ok, "--size", "33"],
        "invalid choice: 'magic'": ["curate", "egogen", *ok, "--depth", "magic"],
        "unrecognized arguments: --bogus": ["curate", "egogen", *ok, "--bogus"],
        "argument --limit: invalid int value": ["curate", "egogen", *ok, "--limit", "many"],
        "needs depth_checkpoint (--depth-checkpoint)": ["curate", "holoassist", *ok],
        "depth_checkpoint (--depth-checkpoint): ": ["curate", "holoassist", *ok, "--depth-checkpoint",
                                                    str(tmp_path / "nockpt")],
        "reads the source's depth, but dataset 'arctic' has none": ["curate", "arctic", *ok, "--depth", "sensor"],
        "no complete EgoGen sequence": ["curate", "egogen", "--raw", str(tmp_path / "empty"), *ok[2:]],
        "EgoGen render folder not found": ["curate", "egogen", "--raw", str(tmp_path / "file"), *ok[2:]],
        "another curate run of 'egogen' is writing": ["curate", "egogen", "--raw", str(egogen_raw), "--out", str(out)],
        "out (--out): ": ["curate", "egogen", "--raw", str(egogen_raw), "--out", str(tmp_path / "file")],
    }
    try:
        res = run_cases(list(cases.values()))
    finally:
        lock.close()
    assert res["imported"] == []  # neither Prefect nor Ray (nor torch or Lance) was even imported
    for (needle, argv), r in zip(cases.items(), res["results"]):
        lines = r["stderr"].splitlines()
        assert r["rc"] == 2 and len(lines) == 1 and needle in lines[0], (argv, r)
        assert lines[0].startswith(("egom2p curate: ", "egom2p: ")), lines
    layout = res["results"][10]["stderr"]
    assert "expected <raw>/<sequence>/{manifest.json" in layout and "datasets/egogen.yaml" in layout
    assert not list(out.glob("*.lance")) and not (tmp_path / "o2").exists()  # nothing was written


def test_curate_console_script_missing_raw(tmp_path):
    """The installed entry point: a missing --raw is one line on stderr, exit 2, nothing on stdout."""
    p = subprocess.run([str(BIN / "egom2p"), "curate", "egogen", "--raw", str(tmp_path / "nope"), "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines() == [f"egom2p curate: raw (--raw): raw root {tmp_path / 'nope'} of 'egogen' does "
                                     "not exist"]


def test_tokenize_bad_input_is_one_line_before_prefect_or_ray(tmp_path):
    from egom2p.clips import write_clips
    from factories import make_clip

    table = tmp_path / "egogen.lance"
    write_clips(table, [make_clip(sequence="a")])
    tok = tmp_path / "tok"
    (tok / "cam").mkdir(parents=True)
    (tmp_path / "plain").mkdir()
    base = ["tokenize", "--out", str(tmp_path / "t.lance")]
    cases = {
        "clips (--clips): " + str(tmp_path / "missing.lance") + ": clips table not found":
            [*base, "--clips", str(tmp_path / "missing.lance"), "--tokenizers", str(tok)],
        "not a Lance table": [*base, "--clips", str(tmp_path / "plain"), "--tokenizers", str(tok)],
        "tokenizers (--tokenizers): " + str(tmp_path / "none") + ": tokenizer directory not found":
            [*base, "--clips", str(table), "--tokenizers", str(tmp_path / "none")],
        "no tokenizer for rgb": [*base, "--clips", str(table), "--tokenizers", str(tok), "--modalities", "rgb"],
        "no tokenizer for any modality": [*base, "--clips", str(table), "--tokenizers", str(tmp_path / "plain")],
        "argument --modalities: invalid choice: 'sound'": [*base, "--clips", str(table), "--tokenizers", str(tok),
                                                           "--modalities", "sound"],
        "batch_size (--batch-size) must be positive": [*base, "--clips", str(table), "--tokenizers", str(tok),
                                                       "--batch-size", "0"],
        "the following arguments are required: --clips": [*base, "--tokenizers", str(tok)],
    }
    res = run_cases(list(cases.values()))
    assert res["imported"] == []
    for (needle, argv), r in zip(cases.items(), res["results"]):
        lines = r["stderr"].splitlines()
        assert r["rc"] == 2 and len(lines) == 1 and needle in lines[0], (argv, r)
    assert not (tmp_path / "t.lance").exists()


def test_config_errors_name_flow_and_cli_spellings():
    with pytest.raises(ConfigError, match=r"^limit \(--limit\) must be positive, got 0$"):
        CurateConfig(dataset="egogen", raw="R", out="O", limit=0)
    with pytest.raises(ConfigError, match=r"^modalities \(--modalities\) has unknown modalities \['x'\]"):
        TokenizeConfig(clips=["a"], tokenizers="t", out="o", modalities=["x"])
    assert TokenizeConfig(clips="a.lance", tokenizers="t", out="o").clips == [os.path.abspath("a.lance")]


def test_each_command_module_registers_the_command_of_its_name():
    """`egom2p CMD` imports only egom2p/commands/CMD.py: that module must register CMD."""
    import pkgutil

    from egom2p import commands

    for name in sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")):
        sub = next(a for a in build_parser(only=name)._actions if a.dest == "command")
        assert list(sub.choices) == [name], name
