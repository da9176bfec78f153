"""The temporal-distance (HILP) geometry term: learns path distances, off by default, validated."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import hjepa
from hjepa.config import ConfigError
from hjepa.models.geometry import GeometryConfig, latent_value, temporal_distance_loss


def _walks(n_states: int, b: int, t: int, rng: np.random.Generator) -> torch.Tensor:
    """Lazy random walks on a chain of ``n_states`` states: ``(b, t)`` state indices."""
    steps = rng.integers(-1, 2, (b, t - 1))
    s = np.empty((b, t), np.int64)
    s[:, 0] = rng.integers(0, n_states, b)
    for i in range(1, t):
        s[:, i] = np.clip(s[:, i - 1] + steps[:, i - 1], 0, n_states - 1)
    return torch.from_numpy(s)


@pytest.fixture
def one_thread():
    """Tiny tensors: threading only costs synchronisation (seconds on a busy 2-core machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_learns_chain_distances_from_random_walks(one_thread):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 12
    table = torch.nn.Parameter(torch.randn(n, 8) * 0.1)  # φ of each state, free parameters
    opt = torch.optim.Adam([table], lr=0.05)
    cfg = GeometryConfig(discount=0.95, expectile=0.9)
    for _ in range(300):
        loss = temporal_distance_loss(table[_walks(n, 32, 16, rng)], cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    d = torch.cdist(table, table).detach().numpy()
    iu = np.triu_indices(n, 1)
    hops = np.abs(np.arange(n)[:, None] - np.arange(n)[None])[iu]
    assert spearmanr(d[iu], hops).statistic > 0.9
    # one step apart is about one unit of value (r = -1 per step), far apart is much more
    assert 0.5 < np.diag(d, 1).mean() < 2.0 and d[0, n - 1] > 4 * np.diag(d, 1).mean()


def test_value_and_loss_basics():
    z = torch.randn(4, 6, 5, requires_grad=True)
    assert latent_value(z[0, 0], z[0, 0]).abs().item() < 1e-2
    assert torch.allclose(latent_value(z[0, 0], z[0, 1]), -(z[0, 0] - z[0, 1]).norm(), atol=1e-4)
    loss = temporal_distance_loss(z, GeometryConfig())
    loss.backward()
    assert loss.item() > 0 and z.grad.abs().sum() > 0
    assert temporal_distance_loss(torch.randn(4, 1, 5), GeometryConfig()).item() == 0.0


TINY = ["data.clip_len=8", "model.stride=2", "model.latent_dim=8", "model.encoder_width=4", "model.pred_dim=16",
        "model.pred_heads=2"]


def _losses(overrides):
    cfg = hjepa.compose([*TINY, *overrides])
    torch.manual_seed(0)
    model = hjepa.build_model(cfg, obs_shape=(3, 32, 32), action_dim=2)
    g = torch.Generator().manual_seed(1)
    obs, act = torch.rand(4, 8, 3, 32, 32, generator=g), torch.rand(4, 8, 2, generator=g)
    torch.manual_seed(2)
    return model.losses(model(obs, act))


def test_off_by_default_bit_for_bit_and_on_per_level():
    base, zero = _losses([]), _losses(["model.geometry_weight=[0.0,0.0]"])
    assert base.total.item() == zero.total.item() and base.geometry == [None, None]
    on = _losses(["model.geometry_weight=[0.0,1.0]"])
    assert on.geometry[0] is None and on.geometry[1].item() > 0
    assert on.total.item() == pytest.approx(base.total.item() + on.geometry[1].item(), rel=1e-5)


@pytest.mark.parametrize("override,key", [("model.geometry_weight=[1.0]", "model.geometry_weight"),
                                          ("model.geometry_weight=[-1.0,0.0]", "model.geometry_weight"),
                                          ("model.geometry_discount=1.0", "model.geometry_discount"),
                                          ("model.geometry_expectile=0", "model.geometry_expectile"),
                                          ("model.geometry_random_goal=0.9", "model.geometry_random_goal")])
def test_invalid_geometry_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        hjepa.compose([*TINY, override])


def test_planning_presets_compose():
    d2, d1 = hjepa.compose(["experiment=planning"]), hjepa.compose(["experiment=planning_flat"])
    for cfg in (d2, d1):
        assert cfg.data.layout == "maze" and list(cfg.data.grid) == [3, 3] and cfg.data.layout_seed == 0
        assert cfg.data.episode_len == 128 and cfg.data.clip_len == 64
    assert d2.train.steps == 2000 and d1.train.steps == 2400
    assert d2.model.depth == 2 and list(d2.model.geometry_weight) == [0.0, 10.0]
    assert d1.model.depth == 1 and list(d1.model.geometry_weight) == [10.0]


def test_small_maze_run_with_geometry_trains_logs_and_maps(tmp_path, tmp_tracking, tiny_overrides):
    """A seconds-long version of experiment=planning: trains, logs the term, reloads, draws its energy map."""
    from analysis.world_energy import geodesic_spearman, rooms_env
    from hjepa.train import Trainer

    cfg = hjepa.compose([*tiny_overrides, "experiment=planning", "data.episode_len=32", "data.clip_len=16",
                         "data.num_train_episodes=16", "data.batch_size=4", "train.steps=4", "train.eval_every=4",
                         "train.checkpoint_every=4", "train.log_every=2"], out_dir=str(tmp_path))
    metrics = Trainer(cfg).run()
    assert metrics["train/level1/geometry_loss"] > 0 and "train/level0/geometry_loss" not in metrics
    run = hjepa.load_run(tmp_path)
    assert run.model.geometry_weight == [0.0, 10.0]
    rhos, maps = geodesic_spearman(run.model, rooms_env(run.cfg.data), 2, spacing=0.25)
    assert len(rhos) == 2 and len(maps) == 5 and all(-1 <= r <= 1 for r in rhos)
