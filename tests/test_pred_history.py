"""``model.pred_history``: a level's predictor that sees only the last h steps of its own past."""

import pytest
import torch

from hjepa.config import ConfigError, ModelConfig, RegularizerConfig
from hjepa.models import LevelPredictor, build_hjepa
from hjepa.models.attention import SelfAttention, causal_window_mask


def test_causal_window_mask_values():
    m = causal_window_mask(4, 4, 2)
    assert m.tolist() == [[True, False, False, False], [True, True, False, False],
                          [False, True, True, False], [False, False, True, True]]
    assert causal_window_mask(2, 5, 0).tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    assert causal_window_mask(1, 5, 1).tolist() == [[False, False, False, False, True]]


def test_windowed_attention_matches_manual_band_softmax():
    torch.manual_seed(0)
    attn = SelfAttention(8, 2, backend="sdpa", window=2)
    x = torch.randn(2, 5, 8)
    q, k, v = attn.qkv(x).chunk(3, -1)
    q, k, v = (t.reshape(2, 5, 2, 4).transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) / 2.0
    i, j = torch.arange(5)[:, None], torch.arange(5)
    s = s.masked_fill((j > i) | (i - j >= 2), float("-inf"))
    ref = attn.proj((s.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(attn(x, causal=True), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("history", [1, 2, 3])
def test_predictor_sees_exactly_its_history(history):
    """Output t moves when z[t − history + 1] moves and not when z[t − history] does."""
    torch.manual_seed(0)
    pred = LevelPredictor(6, 2, 3, width=16, layers=3, heads=2, history=history)
    z, a, c = torch.randn(2, 8, 6), torch.randn(2, 8, 2), torch.randn(2, 8, 3)
    out = pred(z, a, c)
    t = 6
    for lag, moves in ((history - 1, True), (history, False), (history + 1, False)):
        z2, a2 = z.clone(), a.clone()
        z2[:, t - lag] += 3.0
        a2[:, t - lag] -= 2.0
        diff = (pred(z2, a2, c)[:, t] - out[:, t]).abs().max().item()
        assert (diff > 1e-3) if moves else (diff < 1e-5), (lag, diff)


def test_full_history_predictor_reads_far_past():
    torch.manual_seed(0)
    pred = LevelPredictor(6, 2, None, width=16, layers=2, heads=2, history=0)
    z, a = torch.randn(2, 8, 6), torch.randn(2, 8, 2)
    z2 = z.clone()
    z2[:, 0] += 3.0
    assert (pred(z2, a)[:, 7] - pred(z, a)[:, 7]).abs().max() > 1e-3


@pytest.mark.parametrize("conditioning", ["add", "film", "gain"])
@pytest.mark.parametrize("history", [0, 1, 2])
def test_incremental_cache_matches_full_pass(history, conditioning):
    """Planning decodes step by step through a cache: it must give the full pass's outputs, with
    every way the context enters (the gain made non-zero: it starts at zero)."""
    torch.manual_seed(1)
    pred = LevelPredictor(6, 2, 3, width=16, layers=2, heads=2, history=history, conditioning=conditioning)
    if pred.c_gain is not None:
        with torch.no_grad():
            pred.c_gain.weight.normal_()
    z, a, c = torch.randn(3, 7, 6), torch.randn(3, 7, 2), torch.randn(3, 7, 3)
    full = pred(z, a, c)
    cache = pred.new_cache()
    parts = [pred(z[:, :3], a[:, :3], c[:, :3], cache=cache)]
    parts += [pred(z[:, i: i + 1], a[:, i: i + 1], c[:, i: i + 1], cache=cache) for i in range(3, 7)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


def test_model_config_sets_history_per_level_and_validation_names_the_key():
    from omegaconf import OmegaConf

    from hjepa.config import validate_config
    from hjepa.api import compose

    m = ModelConfig(depth=2, latent_dim=16, pred_dim=32, encoder_width=8, pred_history=[0, 1])
    model = build_hjepa(m, RegularizerConfig(), (3, 16, 16), 1)
    assert [lvl.predictor.history for lvl in model.levels] == [0, 1]
    assert [b.attn.window for b in model.levels[1].predictor.blocks] == [1, 1]
    assert [b.attn.window for b in model.levels[0].predictor.blocks] == [0, 0]
    with pytest.raises(ConfigError, match=r"model.pred_history.*needs 2 values"):
        validate_config(compose(["model.pred_history=[0,1,1]"]))
    with pytest.raises(ConfigError, match=r"model.pred_history.*>= 0"):
        validate_config(compose(["model.pred_history=[0,-1]"]))
    assert OmegaConf.select(compose([]), "model.pred_history") is None
