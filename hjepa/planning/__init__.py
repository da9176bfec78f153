"""Latent model-predictive control with trained hjepa world models (flat and hierarchical)."""

from .goals import encode_clip_end, encode_held

__all__ = ["encode_held", "encode_clip_end"]
