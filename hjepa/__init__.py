"""hjepa — hierarchical, multi-timescale JEPA world models.

Notebook use::

    import hjepa
    cfg = hjepa.compose(["model.depth=2", "regularizer=sigreg"])
    data = hjepa.build_data(cfg)
    model = hjepa.build_model(cfg, data)
    run = hjepa.load_run("<mlflow run id or checkpoint path>")
    z = run.embed(batch)            # latents per level
    e = run.energies(batch)         # energies of true and shuffled pairs per level
"""

from .api import LoadedRun, build_model, compose, load_run
from .config import register_configs, validate_config
from .data import build_data

__version__ = "0.1.0"
__all__ = ["LoadedRun", "build_model", "build_data", "compose", "load_run", "register_configs",
           "validate_config", "__version__"]
