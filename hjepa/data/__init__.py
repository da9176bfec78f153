"""Built-in environments (rooms, multiscale bouncing), user ``.npz`` data, and torch loaders."""

from .dataset import ENVS, ClipDataset, DataBundle, StepBatchSampler, build_data, load_npz, register_env
from .trajectories import DataValidationError, Trajectories

__all__ = ["ENVS", "ClipDataset", "DataBundle", "StepBatchSampler", "build_data", "load_npz", "register_env",
           "DataValidationError", "Trajectories"]
