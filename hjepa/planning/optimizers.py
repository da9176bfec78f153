"""Sampling-based optimisers over action sequences: CEM and MPPI, batched over episodes.

Both minimise ``cost(candidates (E, N, H, A)) → (E, N)`` — all candidates of all episodes in one
call per iteration — within box bounds ``[low, high]``, starting from a per-episode Gaussian
``mean, std (E, H, A)`` (warm start: the previous plan shifted), with a seeded ``torch.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

__all__ = ["CEM", "MPPI", "OPTIMIZERS", "build_optimizer", "PlanResult"]

CostFn = Callable[[Tensor], Tensor]


@dataclass
class PlanResult:
    """``actions (E, H, A)`` the best sequence found per episode; ``mean (E, H, A)`` the final
    sampling mean (the warm start of the next plan); ``cost (E,)`` the cost of ``actions``."""

    actions: Tensor
    mean: Tensor
    cost: Tensor


class _Sampler:
    def __init__(self, samples: int, iterations: int, init_std: float = 1.0, min_std: float = 0.05,
                 low: float = -1.0, high: float = 1.0):
        if samples < 2 or iterations < 1:
            raise ValueError(f"need samples >= 2 and iterations >= 1, got {samples} and {iterations}")
        if not low < high:
            raise ValueError(f"action bounds must satisfy low < high, got [{low}, {high}]")
        self.samples, self.iterations = samples, iterations
        self.init_std, self.min_std, self.low, self.high = init_std, min_std, low, high

    def _draw(self, mean: Tensor, std: Tensor, gen: torch.Generator) -> Tensor:
        """``N`` candidates around ``mean`` ``(E, H, A)`` → ``(E, N, H, A)``; candidate 0 is the mean
        itself, so the warm start is always evaluated."""
        e, h, a = mean.shape
        noise = torch.randn((e, self.samples, h, a), generator=gen, device=mean.device, dtype=mean.dtype)
        cand = mean[:, None] + std[:, None] * noise
        cand[:, 0] = mean
        return cand.clamp(self.low, self.high)

    def initial(self, episodes: int, horizon: int, action_dim: int, device=None) -> tuple[Tensor, Tensor]:
        mean = torch.zeros(episodes, horizon, action_dim, device=device)
        return mean, torch.full_like(mean, self.init_std)

    def optimize(self, cost: CostFn, mean: Tensor, std: Tensor, gen: torch.Generator) -> PlanResult:
        """``iterations`` rounds of sampling around ``(mean, std)`` and refitting them (``_update``);
        returns the best candidate ever evaluated, per episode."""
        best = mean.clone()
        best_cost = torch.full(mean.shape[:1], float("inf"), device=mean.device)
        rows = torch.arange(mean.shape[0], device=mean.device)
        for _ in range(self.iterations):
            cand = self._draw(mean, std, gen)
            c = cost(cand)  # (E, N)
            top, arg = c.min(1)
            better = top < best_cost
            best = torch.where(better[:, None, None], cand[rows, arg], best)
            best_cost = torch.where(better, top, best_cost)
            mean, std = self._update(cand, c, mean, std)
        return PlanResult(best, mean, best_cost)

    def _update(self, cand: Tensor, cost: Tensor, mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class CEM(_Sampler):
    """Cross-entropy method: sample, keep the ``elites`` lowest-cost candidates, refit a diagonal
    Gaussian to them (smoothed by ``momentum``), repeat; return the best candidate ever seen."""

    def __init__(self, samples: int = 256, iterations: int = 6, elites: int = 32, momentum: float = 0.0, **kw):
        super().__init__(samples, iterations, **kw)
        if not 1 <= elites <= samples:
            raise ValueError(f"elites must lie in [1, samples={samples}], got {elites}")
        self.elites, self.momentum = elites, momentum

    def _update(self, cand, cost, mean, std):
        idx = cost.topk(self.elites, dim=1, largest=False).indices  # (E, K)
        elite = torch.gather(cand, 1, idx[..., None, None].expand(-1, -1, *cand.shape[2:]))
        mean = self.momentum * mean + (1 - self.momentum) * elite.mean(1)
        std = (self.momentum * std + (1 - self.momentum) * elite.std(1)).clamp_min(self.min_std)
        return mean, std


class MPPI(_Sampler):
    """Model-predictive path integral: the new mean is the average of all candidates weighted by
    ``softmax(−(cost − min cost) / temperature)``; the noise scale stays ``init_std`` (annealed
    toward ``min_std`` by ``std_decay`` per iteration)."""

    def __init__(self, samples: int = 256, iterations: int = 6, temperature: float = 0.05, std_decay: float = 0.8,
                 **kw):
        super().__init__(samples, iterations, **kw)
        if temperature <= 0:
            raise ValueError(f"MPPI temperature must be > 0, got {temperature}")
        self.temperature, self.std_decay = temperature, std_decay

    def _update(self, cand, cost, mean, std):
        w = torch.softmax(-(cost - cost.min(1, keepdim=True).values) / self.temperature, dim=1)  # (E, N)
        return torch.einsum("en,enha->eha", w, cand), (std * self.std_decay).clamp_min(self.min_std)


OPTIMIZERS = {"cem": CEM, "mppi": MPPI}


def build_optimizer(name: str, *, samples: int, iterations: int, elites: int, temperature: float,
                    init_std: float, min_std: float, low: float = -1.0, high: float = 1.0):
    """An optimiser by name (``planner.optimizer``)."""
    common = dict(samples=samples, iterations=iterations, init_std=init_std, min_std=min_std, low=low, high=high)
    if name == "cem":
        return CEM(elites=min(elites, samples), **common)
    if name == "mppi":
        return MPPI(temperature=temperature, **common)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
