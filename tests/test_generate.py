"""Parallel decoding: schedules, guidance, sampling filters, presets, and conditioning on a trained tiny model."""

import pytest
import torch

from egom2p.generate import (PRESETS, GenerationConfig, filter_logits, generate, get_preset, sample_logits,
                             tokens_per_step)
from egom2p.modalities import get_registry
from egom2p.model import EgoM2P, ModelConfig
from train_factories import cam_from_gaze, make_token_db

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    return EgoM2P(ModelConfig(dim=48, encoder_layers=1, decoder_layers=1, heads=4, registry="tiny"),
                  get_registry("tiny")).eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained on gaze -> cam: cam[i] = (5 * gaze[i] + 7) % 64, 16 distinct clips."""
    from egom2p.checkpoint import load_model
    from egom2p.train import compose_config, train

    root = tmp_path_factory.mktemp("gen")
    db = make_token_db(root / "t.lance", parts=(("egogen", 64, ("gaze", "cam")),), scenes=16, offsets=1)
    train(compose_config(["model=tiny", "train.steps=200", "train.batch_size=16", "data.modalities=[gaze,cam]",
                          "data.input_budget=24", "data.target_budget=24", "data.empty_input_prob=0.1",
                          "train.num_workers=0", "train.tensorboard=false", "train.log_every=1000",
                          "optim.warmup_tokens=20000", "optim.lr=3e-3", "train.device=cpu"]), db, out=str(root / "run"))
    model, reg, _ = load_model(root / "run")
    return model


def test_presets_are_the_papers():
    assert {k: v.steps for k, v in PRESETS.items()} == {"camera": 3, "depth": 3, "gaze": 5, "rgb_from_depth": 6}
    for p in PRESETS.values():
        assert (p.temperature, p.top_p, p.guidance, p.schedule, p.step_schedule) == (0.01, 0.8, 1.0, "roar", "linear")
    assert get_preset("camera") is PRESETS["camera"]
    with pytest.raises(KeyError, match="unknown generation preset"):
        get_preset("audio")


def test_step_schedules():
    assert tokens_per_step(30, 3) == [10, 10, 10]
    assert sum(tokens_per_step(320, 6)) == 320 and len(tokens_per_step(320, 6)) == 6
    cos = tokens_per_step(320, 6, "cosine")
    assert sum(cos) == 320 and cos[0] < cos[-1]  # few tokens first, many at the end
    assert tokens_per_step(2, 5) == [1, 1]  # never more steps than tokens


def test_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    p = filter_logits(logits, top_p=0.8).softmax(-1)
    assert p[0, 2:].sum() == 0 and p[0, :2].sum() == pytest.approx(1.0)  # 0.5 + 0.3 reaches 0.8
    p = filter_logits(logits, top_k=1).softmax(-1)
    assert p[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    cfg = GenerationConfig(temperature=0.01)
    tok, conf = sample_logits(logits.expand(50, 4)[None], cfg, torch.Generator().manual_seed(0))
    assert (tok == 0).all() and (conf > 0.99).all()  # temperature 0.01 is greedy here


def test_guidance_convention(untrained, monkeypatch):
    """(1 + w) * cond - w * uncond; equals scale s = 1 + w of uncond + s * (cond - uncond)."""
    import egom2p.generate as G

    seen = {}
    real = G._target_logits

    def spy(model, enc, modality, query):
        out = real(model, enc, modality, query)
        seen["both"] = out
        return out

    captured = {}
    real_sample = G.sample_logits

    def grab(logits, cfg, generator=None):
        captured["l"] = logits
        return real_sample(logits, cfg, generator)

    monkeypatch.setattr(G, "_target_logits", spy)
    monkeypatch.setattr(G, "sample_logits", grab)
    cond = {"gaze": torch.randint(0, 64, (2, 30))}
    w = 1.5
    generate(untrained, cond, ["cam"], GenerationConfig(steps=1, guidance=w), torch.Generator().manual_seed(0))
    lc, lu = seen["both"][:2], seen["both"][2:]
    assert torch.allclose(captured["l"], (1 + w) * lc - w * lu, atol=1e-5)
    assert torch.allclose(captured["l"], lu + (1 + w) * (lc - lu), atol=1e-4)
    assert not torch.allclose(lc, lu)  # the unconditional pass really drops the conditioning


@pytest.mark.parametrize("cfg", [GenerationConfig(steps=3, guidance=1.0, top_p=0.8, temperature=0.01),
                                 GenerationConfig(steps=4, schedule="maskgit", step_schedule="cosine", top_k=5),
                                 "rgb_from_depth"])
def test_valid_tokens_and_conditioning_untouched(untrained, cfg):
    reg = untrained.registry
    g = torch.Generator().manual_seed(0)
    cond = {"depth": torch.randint(0, reg["depth"].vocab_size, (2, reg["depth"].num_tokens), generator=g),
            "gaze": torch.randint(0, 64, (2, 30), generator=g)}
    before = {k: v.clone() for k, v in cond.items()}
    out = generate(untrained, cond, ["rgb", "cam"], cfg, torch.Generator().manual_seed(1))
    assert set(out) == {"rgb", "cam"}
    for m, t in out.items():
        assert t.shape == (2, reg[m].num_tokens) and t.dtype == torch.long
        assert 0 <= int(t.min()) and int(t.max()) < reg[m].vocab_size
    assert all(torch.equal(cond[k], before[k]) for k in cond)
    again = generate(untrained, before, ["rgb", "cam"], cfg, torch.Generator().manual_seed(1))
    assert all(torch.equal(out[m], again[m]) for m in out)  # deterministic for a generator seed


def test_bad_requests(untrained):
    cond = {"gaze": torch.randint(0, 64, (1, 30))}
    with pytest.raises(ValueError, match="both conditioning and targets"):
        generate(untrained, cond, ["gaze"])
    with pytest.raises(ValueError, match="expected"):
        generate(untrained, {"gaze": torch.zeros(1, 29, dtype=torch.long)}, ["cam"])
    with pytest.raises(ValueError, match="outside"):
        generate(untrained, {"gaze": torch.full((1, 30), 64)}, ["cam"])


def test_trained_model_follows_its_conditioning(trained):
    gaze = (torch.arange(16)[:, None] * 4 + torch.arange(30)) % 64  # the 16 training clips' gaze
    truth = torch.as_tensor(cam_from_gaze(gaze.numpy(), 64))
    out = generate(trained, {"gaze": gaze}, ["cam"], "camera", torch.Generator().manual_seed(0))["cam"]
    acc = (out == truth).float().mean().item()
    swapped = generate(trained, {"gaze": gaze.roll(5, 0)}, ["cam"], "camera", torch.Generator().manual_seed(0))["cam"]
    acc_swapped = (swapped == truth).float().mean().item()
    acc_roll = (swapped == truth.roll(5, 0)).float().mean().item()
    print(f"cam from gaze: accuracy {acc:.3f}; with other clips' gaze {acc_swapped:.3f} (follows them: {acc_roll:.3f})")
    assert acc > 0.3 and acc_roll > 0.3 and acc_swapped < acc / 2


@pytest.mark.parametrize("guidance", [0.0, 1.0])
def test_target_distribution_is_the_one_pass_marginal_of_generate(untrained, trained, guidance):
    from egom2p.generate import target_distribution

    g = torch.Generator().manual_seed(0)
    cond = {"gaze": torch.randint(0, 64, (3, 30), generator=g)}
    for model in (untrained, trained):
        p = target_distribution(model, cond, "cam", guidance=guidance)
        assert p.shape == (3, 30, 64) and torch.allclose(p.sum(-1), torch.ones(3, 30), atol=1e-5)
        # one step, every token at once, near-zero temperature: generate takes each token's most likely code
        greedy = generate(model, cond, ["cam"], GenerationConfig(steps=1, temperature=1e-6, guidance=guidance),
                          torch.Generator().manual_seed(1))["cam"]
        assert torch.equal(p.argmax(-1), greedy)
    # the trained model's marginal puts its mass on the code its training pairs tie to the gaze (chance: 1/64)
    gaze = (torch.arange(16)[:, None] * 4 + torch.arange(30)) % 64
    truth = torch.as_tensor(cam_from_gaze(gaze.numpy(), 64))
    p = target_distribution(trained, {"gaze": gaze}, "cam", guidance=guidance)
    assert p.gather(-1, truth[..., None]).mean() > 10 / 64
    with pytest.raises(ValueError, match="both conditioning and targets"):
        target_distribution(trained, {"cam": truth}, "cam")


def test_token_nll_measures_what_the_conditioning_is_worth(untrained, trained):
    from egom2p.generate import target_distribution, token_nll

    gaze = (torch.arange(16)[:, None] * 4 + torch.arange(30)) % 64
    truth = torch.as_tensor(cam_from_gaze(gaze.numpy(), 64))
    given, without = token_nll(trained, {"gaze": gaze}, "cam", truth)
    assert given.shape == without.shape == (16,)
    # the same numbers as the one-pass distribution (no guidance) read at the true codes
    p = target_distribution(trained, {"gaze": gaze}, "cam", guidance=0.0)
    assert torch.allclose(given, -p.gather(-1, truth[..., None]).log().squeeze(-1).mean(1), atol=1e-4)
    # trained on cam = f(gaze): the gaze tokens are worth nats per token; without them the model is near chance
    assert (without - given).mean() > 1.0 and without.mean() > given.mean()
    # a model that never learnt to use its inputs: both are about log(64) and their difference about 0
    g_u, w_u = token_nll(untrained, {"gaze": gaze}, "cam", truth)
    assert abs(float((w_u - g_u).mean())) < 0.1 and abs(float(g_u.mean()) - float(torch.log(torch.tensor(64.0)))) < 0.5
    with pytest.raises(ValueError, match="expected \\(16, 30\\)"):
        token_nll(trained, {"gaze": gaze}, "cam", truth[:, :10])
