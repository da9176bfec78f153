"""The multiscale bouncing environment: fast balls under a slowly switching regime.

``num_objects`` balls of radius ``radius`` move fast inside the unit square ``[0, 1]²`` (y points
up) and bounce elastically off its walls (balls pass through each other). A slow *regime* holds
for a geometric number of steps — it switches with probability ``1 / regime_period`` per step,
so the mean time between switches is ``regime_period`` — and sets

- the gravity direction: one of down, right, up, left (every switch picks a different one);
- the hue of the palette: ball ``i`` has hue ``hue + i / num_objects`` and the background a dark
  tint of the opposite hue; every switch turns the hue by a quarter to three quarters of a turn.

So the slow factors are visible both in every frame (colours) and in the dynamics (gravity bends
the trajectories). Actions ``(L, 2)`` in ``[-1, 1]`` are a thrust on ball 0, smooth random
commands from an autoregressive policy; ``actions[:, t]`` acts between frames ``t`` and ``t + 1``.
Speeds are relaxed toward ``speed`` and capped at three times it, so the balls stay fast but
never run away however long gravity and thrust push them.

Factors (``state``), ``fast_`` changing every step, ``slow_`` piecewise constant:
``fast_x{i}, fast_y{i}, fast_vx{i}, fast_vy{i}`` per ball (velocity is the displacement from
frame ``t - 1`` to ``t`` in units of ``speed``, so it is observable from two frames), then
``slow_gravity_x, slow_gravity_y`` (a unit vector), ``slow_hue_cos, slow_hue_sin`` (the hue as an
angle) and ``slow_regime_id`` (how many switches happened so far in the episode).

Everything is vectorised over episodes (dynamics) and over ``N · L`` frames (rendering, in chunks)
in numpy, and deterministic given the seed.
"""

from __future__ import annotations

import numpy as np

from .trajectories import Trajectories

__all__ = ["generate_multiscale", "multiscale_factor_names", "render_balls", "hue_to_rgb",
           "regime_colours", "GRAVITY_DIRECTIONS", "BALL_RADIUS"]

BALL_RADIUS = 0.08  # world units (the square is 1 wide): 2.6 px at 32x32
GRAVITY_DIRECTIONS = np.array([[0.0, -1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # down, right, up, left
_GRAVITY = 0.12  # gravity per step, as a fraction of `speed`
_THRUST = 0.3  # velocity change per step for a unit action on ball 0, as a fraction of `speed`
_SPEED_RELAX = 0.08  # fraction of the gap to `speed` closed per step
_SPEED_CAP = 3.0  # maximum speed, in units of `speed`
_ACTION_KEEP = 0.8  # AR(1) coefficient of the random thrust commands
_RENDER_CHUNK = 4096  # frames rendered at once


def multiscale_factor_names(num_objects: int) -> list[str]:
    fast = [f"fast_{k}{i}" for i in range(num_objects) for k in ("x", "y", "vx", "vy")]
    return fast + ["slow_gravity_x", "slow_gravity_y", "slow_hue_cos", "slow_hue_sin", "slow_regime_id"]


def hue_to_rgb(hue: np.ndarray, saturation: float = 0.85, value: float = 1.0) -> np.ndarray:
    """RGB in [0, 1], shape ``(..., 3)``, of hues in turns (HSV with fixed saturation / value)."""
    h = np.mod(np.asarray(hue, dtype=np.float64), 1.0)[..., None] * 6.0
    k = np.mod(np.array([5.0, 3.0, 1.0]) + h, 6.0)
    return value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def regime_colours(hue: np.ndarray, num_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """Ball colours ``(..., K, 3)`` and background colour ``(..., 3)`` for palette hues ``(...)``."""
    hue = np.asarray(hue, dtype=np.float64)
    balls = hue_to_rgb(hue[..., None] + np.arange(num_objects) / num_objects)
    background = hue_to_rgb(hue + 0.5, saturation=0.6, value=0.22)
    return balls, background


def render_balls(pos: np.ndarray, ball_rgb: np.ndarray, bg_rgb: np.ndarray, image_size: int,
                 radius: float = BALL_RADIUS) -> np.ndarray:
    """Frames ``(M, 3, S, S)`` uint8 of balls at world positions ``pos (M, K, 2)`` with colours
    ``ball_rgb (M, K, 3)`` over backgrounds ``bg_rgb (M, 3)``: anti-aliased discs, drawn in order
    (ball ``K - 1`` on top)."""
    m, k = pos.shape[:2]
    s = image_size
    r_px = radius * s
    out = np.empty((m, 3, s, s), dtype=np.uint8)
    grid = (np.arange(s, dtype=np.float32) + 0.5)
    for a in range(0, m, _RENDER_CHUNK):
        b = min(m, a + _RENDER_CHUNK)
        c = b - a
        img = np.broadcast_to(bg_rgb[a:b, :, None, None].astype(np.float32), (c, 3, s, s)).copy()
        tmp = np.empty((c, s, s), dtype=np.float32)
        for i in range(k):
            px = (pos[a:b, i, 0] * s).astype(np.float32)  # column
            py = ((1.0 - pos[a:b, i, 1]) * s).astype(np.float32)  # row (y up in the world)
            dx2 = np.square(grid[None, :] - px[:, None])  # (c, s) over columns
            dy2 = np.square(grid[None, :] - py[:, None])  # (c, s) over rows
            np.add(dy2[:, :, None], dx2[:, None, :], out=tmp)
            np.sqrt(tmp, out=tmp)
            np.subtract(np.float32(r_px + 0.5), tmp, out=tmp)
            np.clip(tmp, 0.0, 1.0, out=tmp)  # coverage alpha
            col = ball_rgb[a:b, i].astype(np.float32)
            for ch in range(3):
                plane = img[:, ch]
                # plane += alpha * (colour - plane)
                plane += tmp * (col[:, ch, None, None] - plane)
        img *= 255.0
        img += 0.5
        out[a:b] = img.astype(np.uint8)
    return out


def _reflect(p: np.ndarray, v: np.ndarray, lo: float, hi: float) -> None:
    """Elastic bounce off ``lo`` / ``hi`` in place (one reflection suffices: |v| < hi - lo)."""
    below, above = p < lo, p > hi
    p[below] = 2 * lo - p[below]
    p[above] = 2 * hi - p[above]
    v[below | above] *= -1.0


def generate_multiscale(num_episodes: int, episode_len: int, seed: int, *, num_objects: int = 2,
                        regime_period: float = 50, speed: float = 0.08, image_size: int = 32,
                        radius: float = BALL_RADIUS, gravity_strength: float = _GRAVITY) -> Trajectories:
    """Roll out ``num_episodes`` episodes of ``episode_len`` frames (see the module docstring).

    Returns ``obs (N, L, 3, S, S)`` uint8, ``actions (N, L, 2)`` float32 in ``[-1, 1]``,
    ``state (N, L, 4 · num_objects + 5)`` float32; the last action of each episode is drawn but
    has no observed consequence.
    """
    if num_objects < 1:
        raise ValueError(f"num_objects must be >= 1, got {num_objects}")
    if regime_period < 1:
        raise ValueError(f"regime_period must be >= 1 step, got {regime_period}")
    if not 0 < radius < 0.25:
        raise ValueError(f"radius must lie in (0, 0.25), got {radius}")
    if not 0 < speed * _SPEED_CAP < 1 - 2 * radius:
        raise ValueError(f"speed must lie in (0, {(1 - 2 * radius) / _SPEED_CAP:.3f}) for radius {radius}, got {speed}")
    if episode_len < 1 or num_episodes < 1:
        raise ValueError(f"need at least one episode of one step, got {num_episodes} x {episode_len}")
    rng = np.random.default_rng(seed)
    n, k, L = int(num_episodes), int(num_objects), int(episode_len)

    # ---- slow regime: switch times, gravity directions and hues, (N, L)
    switch = rng.uniform(size=(n, L)) < 1.0 / regime_period
    switch[:, 0] = False
    regime_id = np.cumsum(switch, axis=1)
    dir0 = rng.integers(0, 4, size=(n, 1))
    dir_steps = np.where(switch, rng.integers(1, 4, size=(n, L)), 0)  # a different direction
    gdir = (dir0 + np.cumsum(dir_steps, axis=1)) % 4
    hue0 = rng.uniform(size=(n, 1))
    hue_steps = np.where(switch, rng.uniform(0.25, 0.75, size=(n, L)), 0.0)
    hue = np.mod(hue0 + np.cumsum(hue_steps, axis=1), 1.0)
    gravity = GRAVITY_DIRECTIONS[gdir]  # (N, L, 2)

    # ---- actions: smooth random thrust commands for ball 0
    noise = rng.normal(size=(n, L, 2))
    actions = np.empty((n, L, 2))
    a = np.clip(noise[:, 0] * 0.6, -1, 1)
    for t in range(L):
        if t:
            a = np.clip(_ACTION_KEEP * a + 0.6 * noise[:, t], -1.0, 1.0)
        actions[:, t] = a

    # ---- fast dynamics
    lo, hi = radius, 1.0 - radius
    p = rng.uniform(lo, hi, size=(n, k, 2))
    ang = rng.uniform(0, 2 * np.pi, size=(n, k))
    v = speed * rng.uniform(0.7, 1.3, size=(n, k, 1)) * np.stack([np.cos(ang), np.sin(ang)], -1)
    g, thrust = gravity_strength * speed, _THRUST * speed

    def advance(p, v, grav, act):
        v = v + g * grav[:, None, :]
        v[:, 0] += thrust * act
        sp = np.linalg.norm(v, axis=-1, keepdims=True)
        new_sp = np.clip(sp + _SPEED_RELAX * (speed - sp), 0.0, _SPEED_CAP * speed)
        v = v * (new_sp / np.maximum(sp, 1e-12))
        p = p + v
        _reflect(p, v, lo, hi)
        return p, v

    positions = np.empty((n, L + 1, k, 2))
    positions[:, 0] = p  # frame -1: a warm-up step so velocity at frame 0 is a real displacement
    p, v = advance(p, v, gravity[:, 0], np.zeros((n, 2)))
    for t in range(L):
        positions[:, t + 1] = p
        if t + 1 < L:
            p, v = advance(p, v, gravity[:, t], actions[:, t])
    pos = positions[:, 1:]  # (N, L, K, 2)
    vel = (positions[:, 1:] - positions[:, :-1]) / speed

    fast = np.concatenate([pos, vel], -1).reshape(n, L, 4 * k)  # per ball: x, y, vx, vy
    slow = np.stack([gravity[..., 0], gravity[..., 1], np.cos(2 * np.pi * hue), np.sin(2 * np.pi * hue),
                     regime_id.astype(np.float64)], -1)
    state = np.concatenate([fast, slow], -1).astype(np.float32)

    ball_rgb, bg_rgb = regime_colours(hue, k)  # (N, L, K, 3), (N, L, 3)
    obs = render_balls(pos.reshape(n * L, k, 2), ball_rgb.reshape(n * L, k, 3), bg_rgb.reshape(n * L, 3),
                       image_size, radius).reshape(n, L, 3, image_size, image_size)
    return Trajectories(obs, actions.astype(np.float32), state, multiscale_factor_names(k))
