"""Executable checks of the theory behind hjepa (docs/design.md §8); each claim is tied to a test in
``tests/test_theory.py`` — see ``theory/README.md``.

* :mod:`theory.lejepa` — isotropic Gaussian embeddings are minimax for linear probes; slicing
  (Cramér–Wold); exact expectation of the Epps–Pulley statistic.
* :mod:`theory.linear_jepa` — per-mode ODE of deep linear JEPA / MAE training; JEPA learns
  high-regression-coefficient features first (Littwin et al. 2024).
* :mod:`theory.multiscale` — predictability of Ornstein–Uhlenbeck components at a horizon, and
  which components each level of the hierarchy should keep.
"""
