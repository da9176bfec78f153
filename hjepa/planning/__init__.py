"""Latent model-predictive control with trained hjepa world models (flat, hierarchical, waypoint graph)."""

from . import graph as _graph  # noqa: F401 — registers planner=graph
from .goals import encode_clip_end, encode_held

__all__ = ["encode_held", "encode_clip_end"]
