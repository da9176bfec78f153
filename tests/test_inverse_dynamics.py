"""``model.idm_weight``: a linear inverse-dynamics term at a level's clock."""

import pytest
import torch

from hjepa.config import ConfigError, ModelConfig, RegularizerConfig, validate_config
from hjepa.models import build_hjepa
from hjepa.models.inverse_dynamics import InverseDynamicsHead, inverse_dynamics_targets


def test_targets_are_the_actions_between_the_two_steps():
    a = torch.arange(16.0).reshape(1, 16, 1)  # action value = its frame index
    t1 = inverse_dynamics_targets(a, 4, 4)  # level with span 4: 4 steps, 3 transitions
    assert t1.shape == (1, 3, 4)
    # step τ covers frames [4τ, 4τ+4); the transition τ→τ+1 is driven by actions 4τ+3 … 4τ+6
    assert t1[0].tolist() == [[3, 4, 5, 6], [7, 8, 9, 10], [11, 12, 13, 14]]
    t0 = inverse_dynamics_targets(a, 1, 16)  # level 0: a[t] leads from z[t] to z[t+1]
    assert t0[0, :, 0].tolist() == list(range(15))
    two = torch.stack([a[..., 0], -a[..., 0]], -1)  # 2-D actions are concatenated in time order
    assert inverse_dynamics_targets(two, 4, 2)[0, 0].tolist() == [3, -3, 4, -4, 5, -5, 6, -6]


def test_a_linear_head_recovers_actions_that_the_latents_hold_linearly():
    """Latents whose difference is the action: the head fits it to ~0 error; on random latents it cannot."""
    torch.manual_seed(0)
    b, t = 64, 8
    acts = torch.randn(b, t, 1)
    z = torch.cumsum(torch.cat([torch.zeros(b, 1, 1), acts[:, :-1]], 1), 1)  # z[t+1] − z[t] = a[t]
    head = InverseDynamicsHead(1, 1, 1)
    opt = torch.optim.Adam(head.parameters(), 0.05)
    for _ in range(300):
        opt.zero_grad()
        head.loss(z, acts).backward()
        opt.step()
    assert head.loss(z, acts).item() < 1e-3
    assert head.loss(torch.randn_like(z), acts).item() > 0.5


def test_idm_term_adds_to_the_level_loss_and_trains_the_encoder():
    torch.manual_seed(0)
    base = dict(depth=2, latent_dim=16, pred_dim=32, encoder_width=8)
    obs, act = torch.rand(4, 16, 3, 16, 16), torch.rand(4, 16, 1) * 2 - 1
    off = build_hjepa(ModelConfig(**base), RegularizerConfig(seed=0), (3, 16, 16), 1)
    on = build_hjepa(ModelConfig(**base, idm_weight=[0.0, 2.0]), RegularizerConfig(seed=0), (3, 16, 16), 1)
    assert list(off.idm_heads) == [] and list(on.idm_heads) == ["1"]
    assert on.idm_heads["1"].linear.out_features == 4  # span 4 x 1-D actions
    on.load_state_dict({**off.state_dict(), **{k: v for k, v in on.state_dict().items() if k.startswith("idm")}})
    l_off, l_on = off.losses(off(obs, act)), on.losses(on(obs, act))
    assert l_on.inverse_dynamics[0] is None and l_on.inverse_dynamics[1] > 0
    torch.testing.assert_close(l_on.total - l_off.total, 2.0 * l_on.inverse_dynamics[1], atol=1e-5, rtol=1e-4)
    on.zero_grad()
    on.idm_heads["1"].loss(on(obs, act).z[1], act).backward()
    assert on.levels[0].encoder.head.weight.grad.abs().sum() > 0  # through level 1 into the frame encoder


def test_idm_weight_validation_names_the_key():
    from hjepa.api import compose

    with pytest.raises(ConfigError, match=r"model.idm_weight.*needs 2 values"):
        validate_config(compose(["model.idm_weight=[1.0]"]))
    with pytest.raises(ConfigError, match=r"model.idm_weight.*>= 0"):
        validate_config(compose(["model.idm_weight=[0.0,-1.0]"]))
