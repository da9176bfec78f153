"""Simulators written elsewhere: gymnasium environments as data sources and planning worlds.

Everything here needs the optional extra ``pip install -e '.[envs]'`` (gymnasium with classic
control, gymnasium-robotics, mujoco); importing this package does not, only calling into it.
"""

from .gym_env import EnvsMissingError, factor_names, headless, make_env, require_envs

__all__ = ["EnvsMissingError", "factor_names", "headless", "make_env", "require_envs"]
