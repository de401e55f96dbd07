"""The 4M-style masking sampler on small token DBs built with the token DB API."""

import numpy as np
import pytest
import torch

from egom2p.sampler import MaskingSampler, SamplerError, allocate, dataset_weights, make_loader, mask_sample
from egom2p.tokendb import open_token_db
from train_factories import make_token_db

MIX = {"input_budget": 64, "target_budget": 64}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    # egogen: all four modalities; hot3d: rgb + cam only (depth and gaze missing)
    return make_token_db(tmp_path_factory.mktemp("db") / "tok.lance")


def test_allocate_caps_and_redistributes():
    a = allocate(np.array([0.9, 0.1]), 100, np.array([30, 320]))
    assert a.tolist() == [30, 70]
    a = allocate(np.array([0.5, 0.5, 0.0]), 7, np.array([10, 10, 10]))
    assert a.sum() == 7 and a[2] == 0
    assert allocate(np.array([1.0, 0.0]), 500, np.array([30, 320])).tolist() == [30, 320]  # capped at available
    rng = np.random.default_rng(0)
    for _ in range(200):
        caps = rng.integers(0, 50, 4)
        p = rng.dirichlet([0.1] * 4)
        b = int(rng.integers(0, 120))
        a = allocate(p, b, caps)
        assert a.sum() == min(b, caps.sum()) and (a <= caps).all() and (a >= 0).all()


def test_dirichlet_alpha_controls_concentration():
    def spread(alpha):
        rng = np.random.default_rng(1)
        ent = []
        for _ in range(300):
            plan = mask_sample(rng, [0, 1, 2, 3], [320, 320, 320, 320], [alpha], 64, 64)
            n = np.array([len(i) for _, i, _ in plan], float)
            p = n / n.sum()
            ent.append(-(p[p > 0] * np.log(p[p > 0])).sum())
        return np.mean(ent)
    assert spread(0.01) < 0.2 < 1.2 < spread(10.0)


def test_dataset_weights():
    sizes = {"a": 300, "b": 100}
    assert dataset_weights(sizes, "size") == pytest.approx({"a": 0.75, "b": 0.25})
    assert dataset_weights(sizes, "uniform") == pytest.approx({"a": 0.5, "b": 0.5})
    assert dataset_weights(sizes, "temperature", 2.0) == pytest.approx({"a": 3 ** 0.5 / (3 ** 0.5 + 1),
                                                                        "b": 1 / (3 ** 0.5 + 1)})
    assert dataset_weights(sizes, explicit={"a": 1, "b": 3}) == pytest.approx({"a": 0.25, "b": 0.75})


def test_masking_invariants(db):
    tdb = open_token_db(db)
    s = MaskingSampler(tdb, MIX, seed=3, batch_size=16)
    mods = tdb.registry.names
    for b in range(3):
        batch = s.batch(b)
        for i in range(16):
            row = int(batch["row"][i])
            ev, dv = batch["enc_valid"][i], batch["dec_valid"][i]
            assert ev.sum() <= 64 and dv.sum() <= 64
            assert ev.sum() == 64 and dv.sum() == 64  # enough tokens in every clip here to fill both budgets
            for k, m in enumerate(mods):
                toks, present = tdb.tokens([row], m)
                e = ev & (batch["enc_mod"][i] == k)
                d = dv & (batch["dec_mod"][i] == k)
                if not present[0]:
                    assert e.sum() == 0 and d.sum() == 0, f"absent modality {m} was sampled"
                    continue
                ep, dp = batch["enc_pos"][i][e].numpy(), batch["dec_pos"][i][d].numpy()
                assert not set(ep) & set(dp), "inputs and targets overlap"
                assert len(set(ep)) == len(ep) and len(set(dp)) == len(dp)
                assert (batch["enc_tok"][i][e].numpy() == toks[0][ep]).all()
                assert (batch["dec_tok"][i][d].numpy() == toks[0][dp]).all()
            # padding slots carry nothing
            assert (batch["enc_tok"][i][~ev] == 0).all() and (batch["dec_tok"][i][~dv] == 0).all()


def test_deterministic_resumable_and_rank_split(db):
    a = MaskingSampler(db, MIX, seed=7, batch_size=8)
    b = MaskingSampler(db, MIX, seed=7, batch_size=8)
    c = MaskingSampler(db, MIX, seed=8, batch_size=8)
    x, y = a.batch(5), b.batch(5)  # batch 5 directly (resume) equals batch 5 of another instance
    assert all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(x["enc_pos"], c.batch(5)["enc_pos"])
    r0 = MaskingSampler(db, MIX, seed=7, batch_size=8, rank=0, world_size=2).batch(5)
    r1 = MaskingSampler(db, MIX, seed=7, batch_size=8, rank=1, world_size=2).batch(5)
    for k in x:
        assert torch.equal(torch.cat([r0[k], r1[k]]), x[k])


def test_dataset_proportions(db):
    s = MaskingSampler(db, {**MIX, "modalities": ["cam"], "input_budget": 8, "target_budget": 8}, seed=0,
                       batch_size=100)
    rows = s.batch(0)["row"].numpy()
    ds = np.array(open_token_db(db).index().column("dataset").to_pylist())[rows]
    assert 0.6 < (ds == "egogen").mean() < 0.9  # 24 vs 8 clips -> 0.75
    u = MaskingSampler(db, {**MIX, "weighting": "uniform"}, seed=0, batch_size=100)
    ds = np.array(open_token_db(db).index().column("dataset").to_pylist())[u.batch(0)["row"].numpy()]
    assert 0.35 < (ds == "egogen").mean() < 0.65


def test_spawn_workers_give_the_same_batches(db):
    s = MaskingSampler(db, MIX, seed=1, batch_size=4)
    ref = [s.batch(b) for b in range(2, 6)]
    got = list(make_loader(s, start_batch=2, num_workers=2, num_batches=4))
    assert len(got) == 4
    for r, g in zip(ref, got):
        assert all(torch.equal(r[k], g[k]) for k in r)


def test_bad_input_errors(db):
    with pytest.raises(SamplerError, match="no rows for dataset 'egoexo4d'"):
        MaskingSampler(db, {**MIX, "datasets": ["egogen", "egoexo4d"]})
    with pytest.raises(SamplerError, match="unknown modality"):
        MaskingSampler(db, {**MIX, "modalities": ["rgb", "audio"]})
    with pytest.raises(SamplerError, match="larger than the 60 tokens"):
        MaskingSampler(db, {"modalities": ["gaze", "cam"], "input_budget": 40, "target_budget": 40})
    with pytest.raises(SamplerError, match="no clip with any of the modalities"):
        MaskingSampler(db, {"input_budget": 8, "target_budget": 8, "modalities": ["gaze"], "datasets": ["hot3d"]})


def test_balanced_masking_makes_every_modality_a_target():
    """Under the paper's order (4m) a 30-token modality beside video is mostly all input; balanced
    masking makes it a fully masked target in a large share of samples, at base and tiny budgets."""
    from egom2p.modalities import get_registry
    from egom2p.sampler import masking_shares

    for reg, budgets in (("base", (2048, 2048)), ("tiny", (128, 128))):
        nt = {m.name: m.num_tokens for m in get_registry(reg)}
        for present in (["rgb", "gaze", "cam"], ["rgb", "depth", "gaze", "cam"]):
            old = masking_shares(present, nt, *budgets, samples=2000, masking="4m")
            new = masking_shares(present, nt, *budgets, samples=2000, masking="balanced")
            assert old["cam"]["target"] < 0.4 and old["cam"]["all_input"] > 0.4  # the measurement
            for m in present:
                assert new[m]["target"] >= 0.5, (reg, present, m, new[m])
            for m in ("gaze", "cam"):
                assert new[m]["fully_masked"] >= 0.45 and new[m]["all_input"] < 0.35, (reg, present, m, new[m])


def test_balanced_masking_keeps_budgets_and_disjointness():
    rng = np.random.default_rng(0)
    for _ in range(300):
        present = sorted(rng.choice(4, size=int(rng.integers(1, 5)), replace=False).tolist())
        ntok = [320, 320, 30, 30]
        plan = mask_sample(rng, present, ntok, [0.01, 0.1, 1.0, 10.0], 128, 128, 0.1, "balanced")
        assert [m for m, _, _ in plan] == present
        total = sum(ntok[m] for m in present)
        n_tgt = sum(len(t) for _, _, t in plan)
        n_in = sum(len(i) for _, i, _ in plan)
        assert n_tgt == min(128, total) and n_in <= min(128, total - n_tgt)
        for m, inp, tgt in plan:
            assert not set(inp.tolist()) & set(tgt.tolist())
            assert len(set(inp.tolist())) == len(inp) and (np.concatenate([inp, tgt]) < ntok[m]).all()
    with pytest.raises(SamplerError, match="unknown masking"):
        mask_sample(rng, [0], [30], [1.0], 8, 8, masking="bogus")


def test_batch_masking_counts(db):
    from egom2p.sampler import batch_masking_counts

    s = MaskingSampler(db, MIX, seed=3, batch_size=16)
    batch = s.batch(0)
    c = batch_masking_counts(batch, s.all_modalities)
    assert c["samples"] == 16
    for k in range(len(s.all_modalities)):
        tgt = ((batch["dec_mod"] == k) & batch["dec_valid"]).any(1)
        inp = ((batch["enc_mod"] == k) & batch["enc_valid"]).any(1)
        assert c["target"][k] == int(tgt.sum()) and c["fully_masked"][k] == int((tgt & ~inp).sum())
    assert (c["fully_masked"] <= c["target"]).all() and c["target"].sum() > 0
