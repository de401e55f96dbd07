"""The README's main command end to end (``egom2p demo``, small settings) and the three notebooks on its outputs.

This is the acceptance path of the whole system: render -> curate (Prefect + Ray) -> tokenizers ->
tokenize -> train -> predict -> eval, then every notebook executed top to bottom with its figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    from egom2p.cli import main
    from egom2p.demo import DemoConfig, run_demo

    out = tmp_path_factory.mktemp("demo") / "demo_out"
    results = run_demo(DemoConfig(out=out, sequences=4, seconds=4, size=96, tokenizer_steps=60, video_steps=40,
                                  train_steps=60, eval_limit=2), main)
    return out, results


def test_demo_writes_every_stage(demo_out):
    out, results = demo_out
    assert sorted(p.name for p in (out / "raw").iterdir() if p.is_dir()) == [f"s0_{i:04d}" for i in range(4)]
    assert (out / "raw" / "s0_0000" / "preview.png").stat().st_size > 10_000
    assert (out / "clips" / "egogen.lance").is_dir() and (out / "clips" / "egogen.summary.json").is_file()
    for m in ("rgb", "depth", "gaze", "cam"):
        assert (out / "tokenizers" / m / "config.json").is_file()
    # the video tokenizer, the longest step, trains on every core the demo uses
    assert json.loads((out / "tokenizers" / "rgb" / "config.json").read_text())["train"]["threads"] == 2
    assert (out / "tokens" / "demo.lance").is_dir()
    assert (out / "predict" / "camera" / "trajectory.tum.txt").read_text().count("\n") >= 60
    assert set(results) == {"camera", "gaze", "depth", "rgb"}
    for task in results:
        assert (out / "eval" / f"eval_{task}.md").is_file()


def _run_notebook(name: str, overrides: dict) -> nbformat.NotebookNode:
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    params[0].source += "\n# injected by the test\n" + "\n".join(f"{k} = {v!r}" for k, v in overrides.items())
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    return nb


def _images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def _errors(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


def test_inspect_clips_notebook(demo_out):
    out, _ = demo_out
    nb = _run_notebook("inspect_clips.ipynb", {"CLIPS_DIR": str(out / "clips")})
    assert not _errors(nb) and _images(nb) >= 4  # frames, depth, gaze trail, trajectory
    widgets = sum("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                  for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert widgets == 0  # the rerun cell is off by default
    # switched on, the optional cell embeds rerun's viewer (headless here: the widget is created, not drawn)
    nb = _run_notebook("inspect_clips.ipynb", {"CLIPS_DIR": str(out / "clips"), "SHOW_RERUN": True})
    assert not _errors(nb)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in nb.cells[-1].outputs)


def test_view_demo_prediction_and_eval(demo_out, tmp_path):
    from egom2p.cli import main
    from egom2p.view import summarize_rrd

    out, results = demo_out
    assert main(["view", str(out / "predict" / "camera"), "--save", str(tmp_path / "pred.rrd")]) == 0
    s = summarize_rrd(tmp_path / "pred.rrd")
    n = (out / "predict" / "camera" / "trajectory.tum.txt").read_text().count("\n") - 1
    assert s["world/pred/camera"]["frames"] == n and s["world/gt/camera/image"]["frames"] == n
    assert main(["view", str(out / "eval"), "--save", str(tmp_path / "eval.rrd")]) == 0
    s = summarize_rrd(tmp_path / "eval.rrd")
    clips = results["camera"]["num_clips"]
    assert s["world/gt/camera"]["frames"] == 60 * clips and s["world/pred/camera"]["frames"] == 60 * clips
    assert s["depth/pred"]["frames"] == 16 * results["depth"]["num_clips"]


def test_inspect_tokens_notebook(demo_out):
    out, _ = demo_out
    nb = _run_notebook("inspect_tokens.ipynb", {"TOKENS": str(out / "tokens" / "demo.lance"),
                                                "TOKENIZERS": str(out / "tokenizers")})
    assert not _errors(nb) and _images(nb) >= 5  # histograms + 4 reconstructions


def test_predictions_notebook(demo_out):
    out, _ = demo_out
    nb = _run_notebook("predictions.ipynb", {"CKPT": str(out / "runs" / "tiny"), "TOKENIZERS": str(out / "tokenizers"),
                                             "CLIPS": str(out / "clips" / "egogen.lance")})
    assert not _errors(nb) and _images(nb) >= 4  # camera, gaze, depth, rgb
    table = nb.cells[-1].outputs[0]["data"]["text/plain"]
    assert "camera ATE" in table and "depth AbsRel" in table
