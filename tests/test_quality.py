"""``egom2p quality``: nested training subsets of a token DB, the learning-curve table and plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from egom2p.modalities import get_registry
from egom2p.quality import MAIN_METRICS, collect, subset_db, write_curve
from egom2p.tokendb import open_token_db, write_tokens
from train_factories import structured_rows


def _db(path):
    reg = get_registry("tiny")
    rows = []
    for s in range(8):  # 8 training sequences of 3 clips, 2 held-out sequences
        rows += structured_rows(3, "egogen", reg, seed=s, split="train")
    for s in (20, 21):
        rows += structured_rows(3, "egogen", reg, seed=s, split="val")
    write_tokens(str(path), rows, registry=reg, tokenizers={m: {"kind": "synthetic", "sha256": "0" * 64}
                                                            for m in ("rgb", "depth", "gaze", "cam")})
    return path


def test_subset_db_is_nested_and_train_only(tmp_path):
    src = _db(tmp_path / "all.lance")
    sizes, seqs = {}, {}
    for frac in (0.25, 0.5):
        dst = tmp_path / f"f{frac}.lance"
        sizes[frac] = subset_db(src, dst, frac)
        idx = open_token_db(str(dst)).index().to_pydict()
        assert set(idx["split"]) == {"train"} and len(idx["split"]) == sizes[frac]
        seqs[frac] = set(idx["sequence"])
        db = open_token_db(str(dst))
        assert db.lineage[-1]["clips"].endswith(f"({frac:g} of the training sequences)") and db.registry.config == "tiny"
        assert subset_db(src, dst, frac) == sizes[frac]  # re-run: kept
    assert sizes == {0.25: 6, 0.5: 12} and len(seqs[0.25]) == 2 and seqs[0.25] < seqs[0.5]


def _report(task, rows):
    return {"task": task, "num_clips": 4, "rows": [{"method": m, **v} for m, v in rows.items()]}


def test_learning_curve_table_and_plot(tmp_path):
    def results(scale):
        return {
            "camera": _report("camera", {"EgoM2P": {"ate": 0.3 * scale, "rre": 3.0 * scale},
                                         "static pose": {"ate": 0.5, "rre": 2.8},
                                         "constant velocity": {"ate": 0.16, "rre": 3.7},
                                         "tokenizer round trip": {"ate": 0.02, "rre": 0.9}}),
            "gaze": _report("gaze", {"EgoM2P": {"mse": 0.02 * scale}, "centre prior": {"mse": 0.016}}),
            "depth": _report("depth", {"EgoM2P": {"abs_rel": 0.3 * scale}, "per-clip mean depth": {"abs_rel": 0.42}}),
            "rgb": _report("rgb", {"EgoM2P": {"psnr": 14 / scale, "ssim": 0.3 / scale},
                                   "mean training frame": {"psnr": 13.0, "ssim": 0.35}}),
        }
    pts = [{"fraction": f, "train_clips": n, "metrics": collect(results(s))}
           for f, n, s in ((0.25, 36, 1.0), (0.5, 72, 0.8), (1.0, 144, 0.5))]
    best = pts[-1]["metrics"]
    assert best[("camera", "ate")]["baseline_name"] == "constant velocity"
    assert best[("camera", "rre")]["baseline"] == 2.8 and best[("camera", "rre")]["ceiling"] == 0.9
    assert best[("rgb", "ssim")]["baseline_name"] == "mean training frame" and best[("gaze", "mse")]["ceiling"] is None
    md, js, png = write_curve(tmp_path, pts)
    text = md.read_text()
    assert "| 36 (0.25) | 0.3000 | 3.00 | 0.0200 | 0.3000 | 14.00 | 0.3000 |" in text
    assert "| 144 (1) | 0.1500 |" in text and "0.1600 (constant velocity)" in text and "| tokenizer round trip |" in text
    assert len(json.loads(js.read_text())) == 3 and png.stat().st_size > 10_000
    assert len(MAIN_METRICS) == 6
    # evals with the expected-code row: each cell gives both estimates, and the note says which is which
    for p in pts:
        for v in p["metrics"].values():
            v["expected"] = None if v["model"] is None else round(v["model"] * 0.9, 6)
    md, _, _ = write_curve(tmp_path, pts)
    text = md.read_text()
    assert "| 36 (0.25) | 0.3000 / 0.2700 | 3.00 / 2.70 | 0.0200 / 0.0180 |" in text
    assert "EgoM2P cells: one decode with the paper's preset / the decode of the expected code" in text
    assert text.count("| n/a / n/a / n/a / n/a |") == 3  # no inputs' worth in these evals
    # what the inputs are worth to each run (its eval tables' information), a column and a panel of the plot
    for p, g in zip(pts, (0.01, 0.05, 0.2)):
        p["inputs_gain"] = {"camera": g, "gaze": 2 * g, "depth": -g, "rgb": None}
    md, js, png = write_curve(tmp_path, pts)
    text = md.read_text()
    assert "inputs' worth (nats) camera / gaze / depth / rgb ↑ |" in text
    assert "| 0.200 / 0.400 / -0.200 / n/a |" in text and "minus their NLL given" in text
    assert json.loads(js.read_text())[2]["inputs_gain"]["gaze"] == 0.4 and png.stat().st_size > 10_000
    rows = {m: {"mse": 0.01} for m in ("EgoM2P", "EgoM2P, mean of 8 samples", "EgoM2P, expected code")}
    got = collect({"gaze": _report("gaze", rows | {"EgoM2P, expected code": {"mse": 0.005}})})[("gaze", "mse")]
    assert (got["model"], got["mean"], got["expected"]) == (0.01, 0.01, 0.005)


def test_held_out_token_ce_shows_the_gap_of_a_model_fit_to_few_clips(tmp_path):
    from egom2p.evaluation import held_out_loss
    from egom2p.quality import token_ce
    from egom2p.train import main

    db = _db(tmp_path / "all.lance")
    small = tmp_path / "small.lance"
    subset_db(db, small, 0.25)  # 6 training clips: a model that sees them 200 times learns them by heart
    run = tmp_path / "run"
    assert main(["--db", str(small), "--out", str(run), "model=tiny", "train.steps=200", "train.batch_size=8",
                 "data.input_budget=64", "data.target_budget=64", "train.num_workers=0", "train.tensorboard=false",
                 "train.device=cpu", "train.log_every=1000", "optim.warmup_tokens=10000"]) == 0
    val = held_out_loss(run, db, split="val", batches=4)
    train = held_out_loss(run, small, split="train", batches=4)
    assert set(val) == set(train) == {"rgb", "depth", "gaze", "cam"}
    assert all(np.isfinite(v) and v > 0 for v in (*val.values(), *train.values()))
    assert np.mean(list(train.values())) < np.mean(list(val.values())) - 0.3  # fit on its clips, not on the others
    assert held_out_loss(run, db, split="val", batches=4) == val  # fixed seed: the same masks, the same number
    ce = token_ce(run, db, small)
    assert ce["val"] == pytest.approx(np.mean(list(ce["val_per_modality"].values())))
    pts = [{"fraction": 0.25, "train_clips": 6, "metrics": collect({}), "token_ce": ce}]
    md, _, png = write_curve(tmp_path, pts)
    assert f"| {ce['val']:.3f} / {ce['train']:.3f} |" in md.read_text() and png.stat().st_size > 10_000
