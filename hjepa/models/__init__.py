"""Model components: encoders, the causal level predictor, EMA targets, levels and the stack."""

from .attention import SelfAttention, resolve_backend, xformers_available
from .ema import EMATarget, momentum_schedule
from .encoders import FRAME_ENCODERS, ConvEncoder, MLPEncoder, TickEncoder, ViTEncoder, WindowEncoder, build_frame_encoder
from .hjepa import HJEPA, JEPAOutput, LossOutput, build_hjepa
from .level import Level, macro_action_windows, prediction_distance, topdown_context
from .predictor import LevelPredictor

__all__ = ["SelfAttention", "resolve_backend", "xformers_available", "EMATarget", "momentum_schedule",
           "FRAME_ENCODERS", "ConvEncoder", "MLPEncoder", "ViTEncoder", "WindowEncoder", "TickEncoder", "build_frame_encoder",
           "HJEPA", "JEPAOutput", "LossOutput", "build_hjepa", "Level", "macro_action_windows",
           "prediction_distance", "topdown_context", "LevelPredictor"]
