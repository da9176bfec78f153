"""``model.topdown_conditioning=film|gain``: the level above scales the lower predictor's tokens."""

import pytest
import torch

from hjepa.config import ModelConfig, RegularizerConfig
from hjepa.models import LevelPredictor, build_hjepa


def _pair(seed=0):
    torch.manual_seed(seed)
    add = LevelPredictor(6, 2, 3, width=16, layers=2, heads=2, history=1)
    film = LevelPredictor(6, 2, 3, width=16, layers=2, heads=2, history=1, conditioning="film")
    missing, unexpected = film.load_state_dict(add.state_dict(), strict=False)
    assert sorted(missing) == ["c_gain.bias", "c_gain.weight"] and not unexpected
    return add, film


def test_film_starts_as_the_additive_predictor():
    add, film = _pair()
    assert film.c_gain.weight.abs().sum() == 0 and film.c_gain.bias.abs().sum() == 0
    z, a, c = torch.randn(2, 5, 6), torch.randn(2, 5, 2), torch.randn(2, 5, 3)
    torch.testing.assert_close(film(z, a, c), add(z, a, c))


def test_film_gain_multiplies_the_token_by_a_linear_function_of_the_context():
    """With the additive context path at zero, the first-layer token is (W_z z + W_a a + pos)·(1 + W_g c):
    doubling a context that sets the gain to g doubles g, checked on the token itself."""
    _, film = _pair(1)
    with torch.no_grad():
        film.c_in.weight.zero_(), film.c_in.bias.zero_()
        film.c_gain.weight.normal_()
    seen = {}
    film.blocks[0].register_forward_pre_hook(lambda mod, args, kw=None: seen.__setitem__("h", args[0].clone()))
    z, a = torch.randn(1, 4, 6), torch.randn(1, 4, 2)
    c = torch.randn(1, 4, 3)
    film(z, a, torch.zeros_like(c))
    base = seen["h"]
    film(z, a, c)
    h1 = seen["h"]
    film(z, a, 2 * c)
    h2 = seen["h"]
    gain = film.c_gain(c)
    torch.testing.assert_close(h1, base * (1 + gain), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h2 - base, 2 * (h1 - base), atol=1e-5, rtol=1e-5)


# The incremental cache with film / gain: tests/test_pred_history.py::test_incremental_cache_matches_full_pass


def test_gain_has_no_additive_path_and_a_zero_context_leaves_the_token_alone():
    torch.manual_seed(3)
    gain = LevelPredictor(6, 2, 3, width=16, layers=1, heads=2, history=1, conditioning="gain")
    assert gain.c_in is None and gain.c_gain.weight.abs().sum() > 0
    seen = {}
    gain.blocks[0].register_forward_pre_hook(lambda mod, args, kw=None: seen.__setitem__("h", args[0].clone()))
    z, a, c = torch.randn(1, 4, 6), torch.randn(1, 4, 2), torch.randn(1, 4, 3)
    gain(z, a, torch.zeros_like(c))
    base = seen["h"]
    gain(z, a, c)
    torch.testing.assert_close(seen["h"], base * (1 + gain.c_gain(c)), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(seen["h"], base)
    with pytest.raises(ValueError, match="pass ctx"):
        gain(z, a)


def test_film_only_where_there_is_a_context():
    m = ModelConfig(depth=3, latent_dim=16, pred_dim=32, encoder_width=8, topdown_conditioning="film")
    model = build_hjepa(m, RegularizerConfig(), (3, 16, 16), 2)
    assert [lvl.predictor.c_gain is not None for lvl in model.levels] == [True, True, False]
    assert model.levels[0].predictor.c_gain.in_features == 16
    plain = build_hjepa(ModelConfig(depth=2, latent_dim=16, pred_dim=32, encoder_width=8), RegularizerConfig(), (3, 16, 16), 2)
    assert all(lvl.predictor.c_gain is None for lvl in plain.levels)


def test_unknown_conditioning_is_a_config_error_naming_the_key():
    from hjepa.api import compose
    from hjepa.config import ConfigError

    with pytest.raises(ConfigError, match=r"model\.topdown_conditioning.*add, film, gain"):
        compose(["model.topdown_conditioning=multiply"])
