"""Shapes, causality, EMA maths and the depth-1 = flat-JEPA identity of the model."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from hjepa.config import ModelConfig, RegularizerConfig, min_clip_len
from hjepa.models import (EMATarget, LevelPredictor, SelfAttention, TickEncoder, WindowEncoder, build_frame_encoder, build_hjepa,
                          macro_action_windows, momentum_schedule, resolve_backend, topdown_context)


def make(depth=2, strides=None, reg="sigreg", obs_shape=(3, 16, 16), action_dim=2, **model_kw):
    m = OmegaConf.structured(ModelConfig(depth=depth, strides=strides, latent_dim=16, pred_dim=32, pred_heads=4,
                                         encoder_width=8, action_dim_k=4, **model_kw))
    r = OmegaConf.structured(RegularizerConfig(name=reg, seed=0, num_directions=16))
    return build_hjepa(m, r, obs_shape, action_dim), m


@pytest.mark.parametrize("encoder,obs_shape", [("conv", (3, 16, 16)), ("vit", (3, 16, 16)), ("mlp", (7,))])
def test_frame_encoders_shapes_and_dtypes(encoder, obs_shape):
    enc = build_frame_encoder(encoder, obs_shape, 24, 16, patch_size=8, vit_layers=1, heads=4)
    x = torch.rand(3, 5, *obs_shape)
    z = enc(x)
    assert z.shape == (3, 5, 24) and z.dtype == torch.float32
    assert torch.isfinite(z).all()


def test_conv_encoder_rejects_vector_observations():
    with pytest.raises(ValueError, match="model.encoder=mlp"):
        build_frame_encoder("conv", (7,), 8, 8)


def test_window_encoder_drops_remainder():
    enc = WindowEncoder(4, 6, 5)
    assert enc(torch.randn(2, 11, 6)).shape == (2, 2, 5)


def test_tick_encoder_reads_only_the_last_vector_of_each_window():
    torch.manual_seed(0)
    enc = TickEncoder(4, 6, 5)
    x = torch.randn(2, 11, 6)
    z = enc(x)
    assert z.shape == (2, 2, 5)  # the remainder (steps 8-10) is dropped, as by WindowEncoder
    y = x.clone()
    y[:, [0, 1, 2, 4, 5, 6, 8, 9, 10]] += torch.randn(2, 9, 6)  # everything but the ticks 3 and 7
    torch.testing.assert_close(enc(y), z)
    y[:, 7] += torch.randn(2, 6)  # (a constant shift would vanish in the input LayerNorm)
    assert torch.allclose(enc(y)[:, 0], z[:, 0]) and not torch.allclose(enc(y)[:, 1], z[:, 1])


def test_linear_encoder_and_linear_summariser_are_affine_maps():
    torch.manual_seed(0)
    enc = build_frame_encoder("linear", (6,), 4, 32)
    win = WindowEncoder(3, 4, 2, hidden=0)
    tick = TickEncoder(3, 4, 2, hidden=0)
    assert sum(p.numel() for p in enc.parameters()) == 6 * 4 + 4  # one weight matrix and bias
    x, y = torch.randn(2, 6, 6), torch.randn(2, 6, 6)
    for f in (lambda v: enc(v), lambda v: win(enc(v)), lambda v: tick(enc(v))):
        zero = f(torch.zeros_like(x))
        # affine: f(2x − y) − f(0) = 2(f(x) − f(0)) − (f(y) − f(0)), which no MLP with a GELU satisfies
        torch.testing.assert_close(f(2 * x - y) - zero, 2 * (f(x) - zero) - (f(y) - zero), rtol=1e-4, atol=1e-5)
    mlp = WindowEncoder(3, 4, 2)
    zero = mlp(torch.zeros(2, 6, 4))
    a, b = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    assert not torch.allclose(mlp(2 * a - b) - zero, 2 * (mlp(a) - zero) - (mlp(b) - zero), atol=1e-3)


def test_attention_matches_manual_softmax_and_is_causal():
    torch.manual_seed(0)
    attn = SelfAttention(8, 2, backend="sdpa")
    x = torch.randn(2, 5, 8)
    q, k, v = attn.qkv(x).chunk(3, -1)
    q, k, v = (t.reshape(2, 5, 2, 4).transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) / 2.0
    s = s.masked_fill(torch.triu(torch.ones(5, 5, dtype=torch.bool), 1), float("-inf"))
    ref = attn.proj((s.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(attn(x, causal=True), ref, atol=1e-5, rtol=1e-5)
    assert resolve_backend("auto", torch.device("cpu")) == "sdpa"
    with pytest.raises(RuntimeError, match="xformers"):
        resolve_backend("xformers", torch.device("cpu"))


def test_predictor_is_causal():
    torch.manual_seed(0)
    pred = LevelPredictor(6, 2, 3, width=16, layers=2, heads=2)
    z, a, c = torch.randn(2, 8, 6), torch.randn(2, 8, 2), torch.randn(2, 8, 3)
    out = pred(z, a, c)
    z2, a2, c2 = z.clone(), a.clone(), c.clone()
    z2[:, 5:] += 3.0
    a2[:, 5:] -= 2.0
    c2[:, 5:] *= -1
    out2 = pred(z2, a2, c2)
    torch.testing.assert_close(out[:, :5], out2[:, :5])
    assert (out[:, 5:] - out2[:, 5:]).abs().max() > 1e-3


def test_ema_update_maths():
    torch.manual_seed(0)
    online = torch.nn.Linear(3, 2)
    ema = EMATarget(online)
    before = [p.clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    ema.update(online, momentum=0.9)
    for b, t, o in zip(before, ema.module.parameters(), online.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)
        assert not t.requires_grad
    ema.update(online, momentum=0.0)
    for t, o in zip(ema.module.parameters(), online.parameters()):
        torch.testing.assert_close(t, o)
    assert momentum_schedule(0, 100, 0.996, 1.0) == pytest.approx(0.996)
    assert momentum_schedule(50, 100, 0.996, 1.0) == pytest.approx(0.998)
    assert momentum_schedule(200, 100, 0.996, 1.0) == pytest.approx(1.0)


def test_ema_target_gets_no_gradient_and_stopgrad_target_is_detached():
    torch.manual_seed(0)
    for reg in ("ema", "sigreg"):
        model, _ = make(depth=2, reg=reg)
        obs, act = torch.rand(2, 8, 3, 16, 16), torch.randn(2, 8, 2)
        out = model(obs, act)
        assert all(not t.requires_grad for t in out.target)
        model.losses(out).total.backward()
        for lvl in model.levels:
            if lvl.target is not None:
                assert all(p.grad is None for p in lvl.target.parameters())
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lvl.encoder.parameters())


def test_macro_action_windows_alignment():
    # lower actions numbered by time: window tau of stride 4 drives tau -> tau+1 with steps 4tau+3 .. 4tau+6
    a = torch.arange(12, dtype=torch.float32).reshape(1, 12, 1)
    w = macro_action_windows(a, 4, 3).reshape(3, 4)
    assert w[0].tolist() == [3, 4, 5, 6]
    assert w[1].tolist() == [7, 8, 9, 10]
    assert w[2].tolist() == [11, 0, 0, 0]  # zero-padded past the clip


def test_topdown_context_indices():
    up = torch.arange(3, dtype=torch.float32).reshape(1, 3, 1) + 10  # latents of windows 0,1,2
    pred = torch.arange(3, dtype=torch.float32).reshape(1, 3, 1) + 100  # pred[tau] predicts window tau+1
    null = torch.tensor([-1.0])
    last = topdown_context(up, pred, 4, 12, "last", null).flatten().tolist()
    assert last == [-1, -1, -1, 10, 10, 10, 10, 11, 11, 11, 11, 12]
    cur = topdown_context(up, pred, 4, 12, "pred", null).flatten().tolist()
    assert cur == [-1] * 4 + [100] * 4 + [101] * 4


@st.composite
def hierarchies(draw):
    depth = draw(st.integers(1, 3))
    strides = [draw(st.integers(2, 3)) for _ in range(depth - 1)]
    topdown = draw(st.sampled_from(["last", "pred", "none"]))
    summarizer = draw(st.sampled_from(["latents", "last", "frames"]))
    extra = draw(st.integers(0, 3))
    return depth, strides, topdown, summarizer, extra


@settings(max_examples=12, deadline=None)
@given(h=hierarchies(), seed=st.integers(0, 1000), cut_frac=st.floats(0.1, 0.9))
def test_hierarchy_shapes_and_causality_property(h, seed, cut_frac):
    """Changing observations after frame t changes no prediction made from frames <= t, at any level."""
    depth, strides, topdown, summarizer, extra = h
    torch.manual_seed(seed)
    model, m = make(depth=depth, strides=strides, topdown=topdown, summarizer=summarizer, obs_shape=(4,),
                    encoder="mlp")
    model.eval()
    T = min_clip_len(m) + extra
    obs, act = torch.randn(2, T, 4), torch.randn(2, T, 2)
    out = model(obs, act)
    spans = model.spans
    for k in range(depth):
        assert out.z[k].shape == (2, T // spans[k], 16)
        assert out.pred[k].shape == out.z[k].shape and out.target[k].shape == out.z[k].shape
    cut = max(1, int(cut_frac * T))
    obs2 = obs.clone()
    obs2[:, cut:] += torch.randn_like(obs2[:, cut:]) * 5
    out2 = model(obs2, act)
    for k in range(depth):
        # a level-k step tau (frames [tau*span, (tau+1)*span)) is complete by frame cut-1 iff (tau+1)*span <= cut
        done = cut // spans[k]
        torch.testing.assert_close(out.pred[k][:, :done], out2.pred[k][:, :done])
        torch.testing.assert_close(out.z[k][:, :done], out2.z[k][:, :done])
    assert (out.z[0][:, cut:] - out2.z[0][:, cut:]).abs().max() > 1e-4  # the perturbation did reach the model


def test_depth_one_is_the_flat_jepa_and_extra_levels_leave_level0_alone():
    """A depth-2 model with level 1 switched off (weight 0, no top-down) trains level 0 exactly like depth 1."""
    obs, act = torch.rand(4, 8, 3, 16, 16), torch.randn(4, 8, 2)

    def train(depth):
        torch.manual_seed(0)
        model, _ = make(depth=depth, topdown="none", loss_weights=[1.0] + [0.0] * (depth - 1))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(3):
            loss = model.losses(model(obs, act))
            opt.zero_grad()
            loss.total.backward()
            opt.step()
        return model, loss

    flat, lf = train(1)
    deep, ld = train(2)
    torch.testing.assert_close(lf.pred[0], ld.pred[0], rtol=0, atol=0)
    for (n1, p1), (n2, p2) in zip(flat.levels[0].named_parameters(), deep.levels[0].named_parameters()):
        assert n1 == n2
        torch.testing.assert_close(p1, p2, rtol=0, atol=0)


def test_clip_too_short_error_names_minimum():
    model, m = make(depth=3, strides=[4, 4], obs_shape=(4,), encoder="mlp")
    assert min_clip_len(m) == 32 == model.min_clip_len()
    with pytest.raises(ValueError, match="minimum length is 32"):
        model(torch.randn(1, 31, 4), torch.randn(1, 31, 2))


def test_rollout_loss_and_per_level_regularisers():
    torch.manual_seed(0)
    m = OmegaConf.structured(ModelConfig(depth=2, latent_dim=16, pred_dim=32, encoder="mlp", rollout_horizon=[3, 1]))
    r = OmegaConf.structured(RegularizerConfig(name="sigreg", per_level=["sigreg", "ema"], seed=0, num_directions=16))
    model = build_hjepa(m, r, (4,), 2)
    assert [lvl.reg_name for lvl in model.levels] == ["sigreg", "ema"]
    assert model.levels[0].target is None and model.levels[1].target is not None
    out = model(torch.randn(3, 16, 4), torch.randn(3, 16, 2))
    losses = model.losses(out)
    assert losses.rollout[0] is not None and losses.rollout[1] is not None
    assert float(losses.reg[0]) > 0 and float(losses.reg[1]) == 0.0
    assert math.isfinite(float(losses.total.detach()))


def test_zero_init_read_out_predicts_zero_and_sends_no_gradient_down_at_step_0():
    obs, act = torch.rand(2, 8, 3, 16, 16), torch.rand(2, 8, 2)

    def level1_grad_into_level0(**kw):
        torch.manual_seed(0)
        model, _ = make(depth=2, strides=[2], reg="none", **kw)
        out = model(obs, act)
        model.energy(out, 1).mean().backward()  # level 1's prediction loss alone
        grads = [p.grad for p in model.levels[0].encoder.parameters()]
        return out, model, sum(0.0 if g is None else g.abs().sum().item() for g in grads)

    out, model, grad = level1_grad_into_level0(pred_zero_init=[False, True])
    assert out.pred[1].abs().max().item() == 0.0 and out.pred[0].abs().max().item() > 0.01
    assert grad == 0.0
    assert model.levels[1].predictor.out.weight.grad.abs().max().item() > 0  # the read-out learns at once
    _, _, default_grad = level1_grad_into_level0()
    assert default_grad > 1e-3


@pytest.mark.parametrize("conditioning", ["add", "film", "gain"])
def test_topdown_rank_passes_only_r_linear_readouts_of_the_context(conditioning):
    torch.manual_seed(0)
    pred = LevelPredictor(6, 2, 8, width=16, layers=1, heads=2, conditioning=conditioning, ctx_rank=1)
    if conditioning == "film":  # FiLM's scaling starts at zero; give it weight so it is exercised too
        torch.nn.init.normal_(pred.c_gain.weight)
    assert tuple(pred.c_proj.weight.shape) == (1, 8)
    z, a, ctx = torch.randn(2, 5, 6), torch.randn(2, 5, 2), torch.randn(2, 5, 8)
    v = pred.c_proj.weight[0].detach()
    # a context change orthogonal to the one read-out direction v changes nothing ...
    ortho = torch.randn(8)
    ortho = ortho - (ortho @ v) / (v @ v) * v
    out, same = pred(z, a, ctx), pred(z, a, ctx + 3 * ortho)
    torch.testing.assert_close(out, same, atol=1e-5, rtol=1e-5)
    # ... and one along it does
    assert (pred(z, a, ctx + v / v.norm()) - out).abs().max().item() > 1e-3
    full = LevelPredictor(6, 2, 8, width=16, layers=1, heads=2, conditioning=conditioning)
    assert full.c_proj is None
    with pytest.raises(ValueError, match="rank 0"):
        LevelPredictor(6, 2, 8, width=16, conditioning=conditioning, ctx_rank=0)


def test_topdown_rank_builds_into_the_lower_level_only():
    model, _ = make(depth=2, strides=[2], topdown_rank=2)
    assert tuple(model.levels[0].predictor.c_proj.weight.shape) == (2, 16)
    assert model.levels[1].predictor.ctx_dim is None  # the top level has no context to narrow
    out = model(torch.rand(2, 8, 3, 16, 16), torch.rand(2, 8, 2))
    assert tuple(out.pred[0].shape) == (2, 8, 16) and torch.isfinite(out.pred[0]).all()
