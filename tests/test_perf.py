"""Model FLOPs and MFU accounting (egom2p.perf): a hand count on a tiny config, a cross-check with
torch's FLOP counter on the real forward pass, and MFU from a device peak."""

import torch

from egom2p.modalities import get_registry
from egom2p.model import EgoM2P, ModelConfig
from egom2p.perf import forward_flops_per_sample, mfu, peak_flops, step_flops, synthetic_batch

CFG = ModelConfig(dim=12, encoder_layers=1, decoder_layers=1, heads=2, mlp_ratio=4.0, registry="tiny")


def test_flops_match_a_hand_count():
    assert CFG.mlp_hidden == 32  # 2/3 * 4 * 12
    # encoder layer, 3 input slots (multiply-adds): q 3*12*12 + kv 3*12*24 + out 3*12*12 + gate/up 3*12*64
    # + down 3*32*12 = 5184; scores 3*3*12 + values 3*3*12 = 216  -> 2 * 5400 FLOPs
    enc = 2 * (3 * 144 + 3 * 288 + 3 * 144 + 3 * 768 + 3 * 384 + 108 + 108)
    # decoder layer, 2 target slots: self q/kv/out 2*(144+288+144) = 1152, cross q + out 2*144*2 = 576,
    # cross kv over the 3 encoder outputs 3*288 = 864, MLP 2*(768+384) = 2304, self scores + values
    # 2*2*12*2 = 96, cross scores + values 2*3*12*2 = 144
    dec = 2 * (1152 + 576 + 864 + 2304 + 96 + 144)
    assert forward_flops_per_sample(12, 32, 1, 1, 3, 2) == enc + dec == 10800 + 10272
    # one gaze and one cam target: tied heads of 64 codes each, 2 * 12 * 64 FLOPs per target
    head = 2 * 12 * 64 * 2
    vocab = {m: get_registry("tiny")[m].vocab_size for m in ("gaze", "cam")}
    assert step_flops(CFG, vocab, 1, 3, 2, {"gaze": 1, "cam": 1}) == 3 * (enc + dec + head) == 72432
    assert step_flops(CFG, vocab, 4, 3, 2, {"gaze": 4, "cam": 4}) == 4 * 72432  # linear in the batch


def test_flops_match_torch_flop_counter_on_the_model():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    reg = get_registry("tiny")
    cfg = ModelConfig(dim=48, encoder_layers=2, decoder_layers=3, heads=4, registry="tiny")
    torch.manual_seed(0)
    model = EgoM2P(cfg, reg, attention="sdpa").eval()
    b = synthetic_batch(reg, 2, 20, 14, generator=torch.Generator().manual_seed(0))
    # the math kernel runs attention as matrix products the counter sees (it skips CPU flash attention)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model(b)
    targets = {m: int((b["dec_mod"] == i).sum()) for i, m in enumerate(model.modalities)}
    vocab = {m: reg[m].vocab_size for m in model.modalities}
    assert fc.get_total_flops() == step_flops(cfg, vocab, 2, 20, 14, targets) / 3


def test_mfu_and_peaks():
    assert peak_flops("cpu") is None  # no known peak for a CPU: MFU is n/a
    assert mfu(1e12, None) is None
    assert peak_flops("cpu", override_tflops=2.0) == 2e12
    assert mfu(494.5e12, 989e12) == 0.5 and mfu(989e12, 989e12, world_size=2) == 0.5
