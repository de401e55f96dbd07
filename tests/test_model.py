"""The EgoM2P model: sizes, positions, masks, padding and modality isolation."""

import pytest
import torch

from egom2p.modalities import get_registry
from egom2p.model import (EgoM2P, ModelConfig, combine_losses, key_mask, sincos_1d, sincos_3d,
                          within_modality_mask)

TINY = ModelConfig(dim=48, encoder_layers=1, decoder_layers=2, heads=4, registry="tiny")


def _model(seed=0):
    torch.manual_seed(seed)
    return EgoM2P(TINY, get_registry("tiny")).eval()


def _batch(model, B=2, Ni=10, Nt=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    reg = model.registry
    enc_mod = torch.randint(0, 4, (B, Ni), generator=g)
    dec_mod = torch.randint(0, 4, (B, Nt), generator=g)
    n = torch.tensor([reg[m].num_tokens for m in model.modalities])
    v = torch.tensor([reg[m].vocab_size for m in model.modalities])
    r = lambda mod: (torch.rand(mod.shape, generator=g) * 1e6).long()  # noqa: E731
    return {"enc_tok": r(enc_mod) % v[enc_mod], "enc_mod": enc_mod, "enc_pos": r(enc_mod) % n[enc_mod],
            "enc_valid": torch.ones(B, Ni, dtype=torch.bool), "dec_tok": r(dec_mod) % v[dec_mod], "dec_mod": dec_mod,
            "dec_pos": r(dec_mod) % n[dec_mod], "dec_valid": torch.ones(B, Nt, dtype=torch.bool)}


def test_base_config_is_about_400m_parameters():
    with torch.device("meta"):
        m = EgoM2P(ModelConfig(), get_registry("base"))
    n = m.num_params()
    print(f"base: {n / 1e6:.1f}M parameters, {m.num_params(embeddings=False) / 1e6:.1f}M without embeddings")
    assert 380e6 < n < 420e6
    assert not any(p.dim() == 1 and "norm" in name and p.numel() != 768 for name, p in m.named_parameters())
    assert not [n for n, _ in m.named_parameters() if n.endswith(".bias")]  # no biases anywhere


def test_sincos_positions():
    p1 = sincos_1d(30, 48)
    assert p1.shape == (30, 48)
    assert torch.allclose(p1[0, :24], torch.zeros(24)) and torch.allclose(p1[0, 24:], torch.ones(24))
    p3 = sincos_3d(5, 8, 8, 48)  # 16 channels per axis
    assert p3.shape == (320, 48)
    g = p3.view(5, 8, 8, 48)
    assert torch.equal(g[2, :, :, :16], g[2, 0, 0, :16].expand(8, 8, 16))  # t channels depend only on t
    assert torch.equal(g[:, 3, :, 16:32], g[0, 3, 0, 16:32].expand(5, 8, 16))
    assert torch.equal(g[:, :, 5, 32:], g[0, 0, 5, 32:].expand(5, 8, 16))


def test_pos_scale_scales_the_fixed_positions_and_nothing_else():
    reg = get_registry("tiny")
    torch.manual_seed(0)
    plain = EgoM2P(TINY, reg)
    cfg = ModelConfig.from_dict({**TINY.to_dict(), "pos_scale": 0.1})  # as a checkpoint's state.json rebuilds it
    torch.manual_seed(0)
    scaled = EgoM2P(cfg, reg)
    assert cfg.pos_scale == 0.1 and ModelConfig.from_dict(TINY.to_dict()).pos_scale == 1.0
    assert torch.allclose(scaled.pos_table, 0.1 * plain.pos_table)
    for (name, p), q in zip(plain.named_parameters(), scaled.parameters()):
        assert torch.equal(p, q), name  # same initial weights: only the positions' weight in the sum changes
    batch = _batch(plain)
    assert not torch.allclose(plain.eval().hidden(batch), scaled.eval().hidden(batch))


def test_masks():
    mod = torch.tensor([[0, 0, 1, 2]])
    valid = torch.tensor([[True, True, True, False]])
    m = within_modality_mask(mod, valid)[0, 0]
    assert m.tolist() == [[True, True, False, False], [True, True, False, False], [False, False, True, False],
                          [False, False, False, True]]
    k = key_mask(torch.tensor([[True, False], [False, False]]))
    assert k[:, 0, 0].tolist() == [[True, False], [True, False]]  # empty sample attends to slot 0


def test_forward_loss_and_tied_output_grad():
    model = _model().train()
    b = _batch(model)
    loss, per = model.loss(b)
    assert torch.isfinite(loss) and set(per) <= set(model.modalities)
    loss.backward()
    used = {model.modalities[i] for i in b["dec_mod"].unique().tolist()}
    for m in used:
        assert model.dec_embed[m].weight.grad is not None and model.dec_embed[m].weight.grad.abs().sum() > 0
    # the tied output projection is the decoder embedding matrix
    h = torch.randn(3, TINY.dim)
    assert torch.equal(model.logits(h, "cam"), h @ model.dec_embed["cam"].weight.t())


def test_padding_does_not_change_outputs():
    model = _model()
    b = _batch(model, B=1)
    h = model.hidden(b)
    pad = {k: torch.cat([v, v[:, :3]], 1) for k, v in b.items()}
    pad["enc_valid"][:, -3:] = False
    pad["enc_tok"][:, -3:] = 0
    pad2 = {k: v.clone() for k, v in pad.items()}
    for k in ("dec_tok", "dec_mod", "dec_pos", "dec_valid"):
        pad2[k] = b[k]
    assert torch.allclose(model.hidden(pad2), h, atol=1e-5)


def test_decoder_attends_within_modality_only():
    model = _model()
    b = _batch(model, B=1, Nt=8)
    b["dec_mod"] = torch.tensor([[2, 2, 2, 2, 3, 3, 3, 3]])
    b["dec_pos"] = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    h = model.hidden(b)
    b2 = dict(b)
    b2["dec_pos"] = torch.tensor([[0, 1, 2, 3, 10, 11, 12, 13]])  # other cam queries
    h2 = model.hidden(b2)
    assert torch.allclose(h[:, :4], h2[:, :4], atol=1e-6)  # gaze outputs unaffected by cam queries
    assert not torch.allclose(h[:, 4:], h2[:, 4:], atol=1e-4)


def test_empty_encoder_is_finite():
    model = _model()
    b = _batch(model)
    b["enc_valid"][:] = False
    assert torch.isfinite(model.hidden(b)).all()


def test_combine_losses_global_counts():
    ce = {"rgb": (torch.tensor(6.0), torch.tensor(3)), "cam": (torch.tensor(2.0), torch.tensor(1)),
          "gaze": (torch.tensor(0.0), torch.tensor(0))}
    loss, per = combine_losses(ce)
    assert abs(loss.item() - (2.0 + 2.0) / 2) < 1e-6 and set(per) == {"rgb", "cam"}
    # two ranks: this rank holds part of the tokens; shares sum to the global loss
    loss_r, _ = combine_losses(ce, {"rgb": 6.0, "cam": 2.0, "gaze": 0.0}, world_size=2)
    assert abs(loss_r.item() - 2 * (1.0 + 1.0) / 2) < 1e-6


# ---- attention with block-structured masks vs the dense boolean masks of before -------------------


def _old_hidden(model, b):
    """The reference: the model's computation before the masks were restructured (per-modality
    index_copy embeddings and dense boolean masks [B, 1, N, N] / [B, 1, 1, N] in every attention)."""
    from egom2p.model import AttentionMasks

    tok, mod, valid = b["enc_tok"], b["enc_mod"], b["enc_valid"]
    B, N = tok.shape
    x = torch.zeros(B * N, model.cfg.dim)
    for i, m in enumerate(model.modalities):
        sel = (valid.reshape(-1) & (mod.reshape(-1) == i)).nonzero().squeeze(1)
        x = x.index_copy(0, sel, model.enc_embed[m](tok.reshape(-1)[sel]))
    x = x.view(B, N, -1) + model._positions(mod, b["enc_pos"]) + model.mod_embed(mod.clamp(min=0))
    x = x * valid[..., None]
    dense = AttentionMasks(key_mask(valid), within_modality_mask(b["dec_mod"], b["dec_valid"]), key_mask(valid))
    ctx = model.encode(x, valid, dense)
    y = model.embed_targets(b["dec_mod"], b["dec_pos"], b["dec_valid"])
    return model.decode(y, b["dec_mod"], b["dec_valid"], ctx, valid, dense)


def _equivalence_batches():
    from egom2p.perf import synthetic_batch

    reg = get_registry("tiny")
    g = torch.Generator().manual_seed(3)
    mixed = synthetic_batch(reg, 6, 40, 36, generator=g, alpha=0.5)  # several modalities per sample
    padded = {k: v.clone() for k, v in mixed.items()}
    padded["enc_valid"][1] = False  # an empty input (the unconditional pass of guidance)
    padded["enc_valid"][2, 25:] = False  # input padding
    padded["dec_valid"][3, 20:] = False  # target padding
    one_mod = synthetic_batch(reg, 3, 40, 36, generator=g)
    one_mod["dec_mod"][:] = 2  # every target the same modality, all valid: no decoder mask at all
    one_mod["dec_tok"] %= reg["gaze"].vocab_size
    one_mod["dec_pos"] = torch.arange(36)[None].expand(3, 36) % reg["gaze"].num_tokens
    return {"mixed": mixed, "padded": padded, "one_modality": one_mod}


def test_attention_masks_skip_what_needs_no_mask():
    from egom2p.model import attention_masks

    b = _equivalence_batches()
    m = attention_masks("sdpa", b["one_modality"]["enc_valid"], b["one_modality"]["dec_mod"],
                        b["one_modality"]["dec_valid"])
    assert m.encoder is None and m.cross is None and m.decoder is None  # flash kernels can run
    m = attention_masks("sdpa", b["padded"]["enc_valid"], b["padded"]["dec_mod"], b["padded"]["dec_valid"])
    assert m.encoder.shape == (6, 1, 1, 40) and m.decoder.shape == (6, 1, 36, 36)
    assert m.encoder[1, 0, 0].tolist() == [True] + [False] * 39  # the empty sample sees its slot 0


def test_sdpa_attention_equals_dense_masks_outputs_and_gradients():
    for name, b in _equivalence_batches().items():
        model = _model(seed=1).train()
        model.attention = "sdpa"
        ref = _old_hidden(model, b)
        ref_grads = torch.autograd.grad((ref * torch.linspace(-1, 1, ref.numel()).view_as(ref)).sum(),
                                        list(model.parameters()), allow_unused=True)
        new = model.hidden(b)
        grads = torch.autograd.grad((new * torch.linspace(-1, 1, new.numel()).view_as(new)).sum(),
                                    list(model.parameters()), allow_unused=True)
        assert torch.allclose(new, ref, atol=2e-6, rtol=1e-5), (name, (new - ref).abs().max())
        for (pname, _), g, r in zip(model.named_parameters(), grads, ref_grads):
            if r is None:  # the old embedding left absent modalities out of the graph
                assert g is None or not g.abs().any(), pname
                continue
            assert torch.allclose(g, r, atol=1e-6, rtol=1e-4), (name, pname, (g - r).abs().max())


@pytest.mark.slow
def test_flex_attention_equals_dense_masks():
    """FlexAttention block masks (the CUDA default) compute the same outputs; on a CPU FlexAttention has
    a forward pass only (torch 2.13), so this compares without gradients."""
    for name, b in _equivalence_batches().items():
        model = _model(seed=2)
        with torch.no_grad():
            ref = _old_hidden(model, b)
            model.attention = "flex"
            new = model.hidden(b)
        assert torch.allclose(new, ref, atol=1e-5, rtol=1e-4), (name, (new - ref).abs().max())


def test_every_parameter_gets_a_gradient_when_a_modality_is_absent():
    """DDP runs without find_unused_parameters: every parameter must take part in every step, also
    when a modality is neither input nor target anywhere in the batch (zero-contribution terms)."""
    model = _model().train()
    b = _batch(model, B=3)
    b["enc_mod"] = b["enc_mod"] % 2  # inputs rgb/depth only
    b["dec_mod"] = 2 + b["dec_mod"] % 1  # targets gaze only: cam absent everywhere, rgb/depth no targets
    reg = model.registry
    b["enc_tok"] %= reg["gaze"].vocab_size
    b["dec_tok"] %= reg["gaze"].vocab_size
    b["enc_pos"] %= reg["gaze"].num_tokens
    b["dec_pos"] %= reg["gaze"].num_tokens
    loss, per = model.loss(b)
    assert set(per) == {"gaze"}
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert not model.enc_embed["cam"].weight.grad.any() and not model.dec_embed["rgb"].weight.grad.any()
    assert model.dec_embed["gaze"].weight.grad.abs().sum() > 0


def test_chunked_cross_entropy_equals_one_product(monkeypatch):
    """Above LOGITS_CHUNK logits the head's cross-entropy runs in recomputed chunks: same sum, same gradients."""
    import egom2p.model as M

    model = _model().train()
    b = _batch(model, B=2, Nt=16)
    b["dec_mod"][:] = 0  # all rgb targets: 32 tokens x 1000 codes
    b["dec_tok"] %= model.registry["rgb"].vocab_size
    b["dec_pos"] %= model.registry["rgb"].num_tokens

    def run():
        model.zero_grad()
        loss, _ = model.loss(b)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in (model.dec_embed["rgb"].weight, model.mask_token)]

    ref_loss, ref_grads = run()
    monkeypatch.setattr(M, "LOGITS_CHUNK", 5000)  # 5 targets per chunk -> 7 chunks
    loss, grads = run()
    assert torch.allclose(loss, ref_loss, rtol=1e-6)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-7, rtol=1e-5)
