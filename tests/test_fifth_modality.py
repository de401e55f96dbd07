"""A fifth modality is one registry entry: added by this file alone, it flows curate -> tokenize -> train -> generate.

The modality is ``imu``: what a head-worn IMU measures, per frame the camera's linear velocity (m/s) and
angular velocity (rad/s) in its own axes, 6 floats. Its test adapter is the EgoGen adapter plus that
signal, derived from the rendered camera trajectory (``RawSequence.signals``). Its registry entry is
built from the registry's building blocks (a float-list codec, a signal standardizer, mean/std
normalisation) and registered for this module only. Nothing under ``egom2p/`` names it: curation,
the clips table, the tokenizer training, the tokenize run, the token DB, the sampler, the model and
generation all iterate over the registry.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from egom2p import modality
from egom2p.adapters.egogen import EgoGenAdapter
from egom2p.modalities import sequence_spec

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAME = "imu"
#: Every file the new modality needed (the registry entry, its codec and tokenizer settings, the adapter
#: field): this one. The claim is checked below: no file of the package names the modality.
NEEDED_FILES = ("tests/test_fifth_modality.py",)


def imu_from_trajectory(c2w: np.ndarray, fps: int = 30) -> np.ndarray:
    """[N, 4, 4] camera-to-world -> [N, 6] (linear velocity, angular velocity) in the camera's axes (the last
    frame repeats the one before)."""
    R, p = c2w[:, :3, :3], c2w[:, :3, 3]
    v = np.einsum("nji,nj->ni", R[:-1], p[1:] - p[:-1]) * fps
    w = np.stack([cv2.Rodrigues(R[i].T @ R[i + 1])[0][:, 0] for i in range(len(R) - 1)]) * fps
    out = np.concatenate([v, w], axis=1)
    return np.concatenate([out, out[-1:]]).astype(np.float64)


class ImuEgoGenAdapter(EgoGenAdapter):
    """EgoGen with a simulated IMU: the adapter field of the new modality."""

    modalities = (*EgoGenAdapter.modalities, NAME)

    def load(self, ref):
        seq = super().load(ref)
        seq.signals[NAME] = imu_from_trajectory(seq.c2w)
        return seq


_encode, _decode = modality.float_sequence_codec(NAME, (6,))
INFO = modality.ModalityInfo(
    name=NAME, tokenizer="sequence", frame_shape=lambda h, w: (6,), dtype=np.float32,
    columns=(modality.float_sequence_column(NAME, (6,)),), encode=_encode, decode=_decode,
    standardize=modality.standardize_signal(NAME), prepare=modality.standard_prepare(6),
    postprocess=modality.standard_postprocess, norm_stats=modality.standard_norm_stats,
)
SPECS = {"base": sequence_spec(NAME, 256, 6), "tiny": sequence_spec(NAME, 64, 6)}


@pytest.fixture(scope="module")
def imu_registered():
    with modality.registered(INFO, SPECS):
        yield
    assert NAME not in modality.names()


@pytest.fixture(scope="module")
def world(imu_registered, tmp_path_factory):
    """Render -> curate (with the IMU adapter) -> train the imu and cam tokenizers -> tokenize -> train the model."""
    from egom2p.curate import CurateConfig
    from egom2p.curate.pipeline import CurationRun
    from egom2p.tokenize_config import TokenizeConfig
    from egom2p.tokenizers.stage import TokenizeRun
    from egom2p.tokenizers.train import TrainConfig, train_sequence
    from egom2p.train import compose_config, train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("imu")
    raw = root / "raw"
    subprocess.run([str(BIN / "egom2p"), "render", "egogen", "--out", str(raw), "--sequences", "2", "--seconds", "4",
                    "--size", "64", "--seed", "0"], check=True, capture_output=True)
    cur = CurateConfig(dataset="egogen", raw=str(raw), out=str(root / "clips"), size=64, depth="none")
    summary = CurationRun(cur, adapter=ImuEgoGenAdapter(), executor="local").run()

    tok = root / "tokenizers"
    tcfg = dict(steps=60, registry="tiny", batch_size=4, log_every=1000, eval_fraction=0.0, device="cpu", threads=1)
    tok_metrics = {m: train_sequence(m, [cur.table_path], tok, TrainConfig(**tcfg), log=lambda s: None)
                   for m in ("cam", NAME)}

    db = str(root / "tokens.lance")
    run = TokenizeRun(TokenizeConfig(clips=[cur.table_path], tokenizers=str(tok), out=db, use_ray=False), log=lambda s: None)
    try:
        run.prepare()
        run.tokenize_table(cur.table_path)
        run.finalize()
    finally:
        run.close()

    res = train(compose_config(["model=tiny", "train.steps=30", "train.batch_size=4", f"data.modalities=[cam,{NAME}]",
                                "data.input_budget=30", "data.target_budget=30", "train.num_workers=0",
                                "train.tensorboard=false", "train.log_every=1000", "train.device=cpu"]),
                db, out=str(root / "run"))
    return {"raw": raw, "table": cur.table_path, "summary": summary, "tok": tok, "tok_metrics": tok_metrics,
            "db": db, "train": res, "run": root / "run"}


def test_no_package_file_names_the_new_modality():
    pkg = ROOT / "egom2p"
    hits = [str(p.relative_to(ROOT)) for p in pkg.rglob("*") if p.is_file() and p.suffix in (".py", ".yaml")
            and f'"{NAME}"' in p.read_text()]
    assert hits == []
    assert all((ROOT / f).is_file() for f in NEEDED_FILES) and len(NEEDED_FILES) <= 3


def test_curation_writes_the_new_modality(world):
    from egom2p.clips import clips_index, read_clips

    s = world["summary"]
    assert (s.clips_written, s.quarantined) == (4, 0)
    assert s.coverage[NAME] == 4 and s.written_by_modality[NAME] == 4 and s.coverage["cam"] == 4
    assert clips_index(world["table"]).column(f"has_{NAME}").to_pylist() == [True] * 4
    adapter = ImuEgoGenAdapter()
    refs = {r.sequence: r for r in adapter.discover(world["raw"])}
    for clip in read_clips(world["table"], decode_rgb=False):
        seq = adapter.load(refs[clip.sequence])
        want = seq.signals[NAME][clip.start_frame:clip.start_frame + 60].astype(np.float32)
        got = clip.get(NAME)
        assert got.dtype == np.float32 and got.shape == (60, 6)
        np.testing.assert_array_equal(got, want)  # bit-exact through the clips table
        assert clip.modalities == ("gaze", "cam", NAME)  # registry order; rgb not decoded, no depth annotator


def test_a_clip_breaking_the_new_rule_is_refused(imu_registered):
    from egom2p.clip import ClipValidationError
    from factories import make_clip

    clip = make_clip(size=32)
    clip.set(NAME, np.zeros((60, 5), np.float32))
    with pytest.raises(ClipValidationError, match=r"imu must be float32 \[60,6\]"):
        clip.validate()


def test_tokenizer_and_token_db_hold_the_new_modality(world):
    from egom2p.tokendb import open_token_db
    from egom2p.tokenizers import load_tokenizers

    m = world["tok_metrics"][NAME]
    assert np.isfinite(m[f"{NAME}_rmse"]) and m["codes_used"] >= 1
    assert (world["tok"] / NAME / "eval.png").is_file()
    db = open_token_db(world["db"])
    assert NAME in db.registry.names and db.registry[NAME].num_tokens == 30
    assert db.counts()["egogen"][NAME] == 4 and db.counts()["egogen"]["cam"] == 4
    toks, present = db.tokens(np.arange(db.num_rows), NAME)
    assert present.all() and toks.shape == (4, 30) and toks.max() < 64
    tok = load_tokenizers(world["tok"], modalities=[NAME])[NAME]
    rec = tok.decode(toks)
    assert rec.shape == (4, 60, 6) and np.isfinite(rec).all()


def test_model_trains_on_and_generates_the_new_modality(world):
    from egom2p.checkpoint import load_model
    from egom2p.generate import generate, preset_for
    from egom2p.tokendb import open_token_db

    losses = world["train"]["losses"]
    assert len(losses) == 30 and np.isfinite(losses).all()
    model, reg, _ = load_model(world["run"])
    assert NAME in model.modalities and reg[NAME].vocab_size == 64
    db = open_token_db(world["db"])
    cam, _ = db.tokens(np.arange(db.num_rows), "cam")
    out = generate(model, {"cam": torch.as_tensor(cam)}, [NAME], preset_for(NAME),
                   generator=torch.Generator().manual_seed(0))
    assert out[NAME].shape == (4, 30) and int(out[NAME].min()) >= 0 and int(out[NAME].max()) < 64
