"""Making gymnasium environments headless, with top-down PointMaze cameras and named state factors.

``make_env(env_id, image_size)`` is the one place an environment is built: it sets the headless
rendering backends (``SDL_VIDEODRIVER=dummy`` for pygame, ``MUJOCO_GL=egl`` for MuJoCo) before the
simulator is imported, registers gymnasium-robotics, and for PointMaze renders ``image_size``
frames from straight above with the goal marker hidden (observations show the maze and the ball
only, so a goal image is a render with the ball at the goal).
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

import numpy as np

from ..data.trajectories import DataValidationError

__all__ = ["EnvsMissingError", "require_envs", "headless", "make_env", "factor_names", "is_pointmaze",
           "state_vector"]

INSTALL_HINT = "pip install -e '.[envs]'  (gymnasium[classic-control], gymnasium-robotics, mujoco)"

# Named true-state factors of the observation vector, for probes. Others: state_0, state_1, ...
_FACTORS: dict[str, list[str]] = {
    "Pendulum": ["cos_theta", "sin_theta", "theta_dot"],
    "CartPole": ["cart_x", "cart_x_dot", "pole_theta", "pole_theta_dot"],
    "Acrobot": ["cos_theta1", "sin_theta1", "cos_theta2", "sin_theta2", "theta1_dot", "theta2_dot"],
    "MountainCarContinuous": ["position", "velocity"],
    "MountainCar": ["position", "velocity"],
    "PointMaze": ["x", "y", "x_dot", "y_dot"],
}


class EnvsMissingError(DataValidationError):
    """An optional simulator package is not installed; the message names the install command."""


def headless() -> None:
    """Render without a display: pygame's dummy video driver and MuJoCo's EGL (Mesa) backend,
    unless the user already chose a backend."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("MUJOCO_GL", "egl")
    if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL's INFO notices are not the user's concern


def require_envs(*modules: str) -> None:
    """Import ``modules`` (default: gymnasium) or raise ``EnvsMissingError`` naming the extra."""
    headless()
    for name in modules or ("gymnasium",):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise EnvsMissingError(f"data=gym / env=pointmaze need the optional package {name!r} ({e}); "
                                   f"install the simulators with: {INSTALL_HINT}") from None


def is_pointmaze(env_id: str) -> bool:
    return env_id.split("/")[-1].startswith("PointMaze")


def _base_name(env_id: str) -> str:
    return env_id.split("/")[-1].split("-v")[0].split("_")[0]


def factor_names(env_id: str, state_dim: int) -> list[str]:
    """Names of the ``state_dim`` entries of the true state (the observation vector)."""
    names = _FACTORS.get(_base_name(env_id))
    if names is None or len(names) != state_dim:
        return [f"state_{i}" for i in range(state_dim)]
    return list(names)


def state_vector(obs: Any) -> np.ndarray:
    """The environment's true state as a flat float vector (goal-env dicts: ``observation``)."""
    if isinstance(obs, dict):
        obs = obs["observation"]
    return np.asarray(obs, np.float64).ravel()


def _top_down_pointmaze(env, image_size: int) -> None:
    """Camera straight above the maze's centre, framing the whole maze; goal marker invisible."""
    u = env.unwrapped
    maze = u.maze
    extent = max(maze.map_length, maze.map_width) * maze.maze_size_scaling
    renderer = u.point_env.mujoco_renderer
    # fovy 45°: a distance of extent / (2 tan 22.5°) frames the maze edge to edge
    renderer.default_cam_config = {"distance": 0.5 * extent / np.tan(np.deg2rad(22.5)), "elevation": -90.0,
                                   "azimuth": 90.0, "lookat": np.array([0.0, 0.0, 0.0]), "trackbodyid": -1}
    renderer.width = renderer.height = int(image_size)
    u.point_env.model.site_rgba[u.target_site_id] = [0.0, 0.0, 0.0, 0.0]


def _register_robotics(gym) -> None:
    """Register gymnasium-robotics' ids when it is installed (its import-time notices silenced)."""
    import contextlib
    import io
    import warnings

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            import gymnasium_robotics

            gym.register_envs(gymnasium_robotics)
    except ImportError:
        pass


def make_env(env_id: str, image_size: int = 64, render: bool = True, **kwargs):
    """A gymnasium environment (``render_mode='rgb_array'`` when ``render``); unknown ids raise a
    ``DataValidationError`` naming the registered ones that look alike."""
    require_envs("gymnasium")
    import gymnasium as gym

    if is_pointmaze(env_id):
        require_envs("gymnasium_robotics", "mujoco")
    _register_robotics(gym)
    if env_id not in gym.registry:
        stem = _base_name(env_id).lower()
        close = sorted(k for k in gym.registry if stem[:5] in k.lower())[:12]
        raise DataValidationError(f"data.env_id={env_id!r} is not a registered gymnasium id"
                         + (f"; similar ids: {', '.join(close)}" if close else "")
                         + f" (for MuJoCo/robotics ids: {INSTALL_HINT})")
    mode = {"render_mode": "rgb_array"} if render else {}
    if is_pointmaze(env_id):
        kwargs = {"continuing_task": True, "reset_target": False, **kwargs}
        if render:
            mode.update(width=int(image_size), height=int(image_size))
    env = gym.make(env_id, disable_env_checker=True, **mode, **kwargs)
    if is_pointmaze(env_id) and render:
        _top_down_pointmaze(env, image_size)
    return env
