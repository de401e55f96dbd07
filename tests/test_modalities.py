import pytest

from egom2p.modalities import MODALITIES, Registry, get_registry


def test_base_registry_matches_paper():
    r = get_registry("base")
    assert r.names == MODALITIES
    assert r["rgb"].token_grid == (5, 32, 32) and r["rgb"].num_tokens == 5120 and r["rgb"].vocab_size == 64000
    assert r["depth"].num_tokens == 5120
    assert r["gaze"].num_tokens == 30 and r["gaze"].vocab_size == 256
    assert r["cam"].num_tokens == 30 and r["cam"].channels == 9


def test_tiny_registry_and_snapshot_round_trip():
    t = get_registry("tiny")
    assert t["rgb"].token_grid == (5, 8, 8) and t["rgb"].vocab_size == 1000
    assert Registry.from_snapshot(t.snapshot()) == t
    t.check_compatible(t.snapshot())
    with pytest.raises(ValueError, match="modality registry mismatch"):
        t.check_compatible(get_registry("base"))
    with pytest.raises(KeyError):
        get_registry("huge")
