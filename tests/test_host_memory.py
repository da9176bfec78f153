"""``keep_freed_memory``: a CPU training step's tensors are reused without page faults (glibc)."""

import platform
import subprocess
import sys

import pytest

# eleven training steps of a small default model; prints the page faults of each of the last eight
_PROBE = """
import resource, sys, torch
torch.set_num_threads(1)
from hjepa.accel import TrainStep, build_adamw, keep_freed_memory
from hjepa.api import build_model, compose
if sys.argv[1] == "keep":
    assert keep_freed_memory()
cfg = compose(["tracking.enabled=false", "model.depth=1", "data.batch_size=8"])
torch.manual_seed(0)
model = build_model(cfg, obs_shape=(3, 32, 32), action_dim=2)
step = TrainStep(model, build_adamw(model.parameters(), cfg.optim, torch.device("cpu")), device="cpu")
obs, act = torch.rand(8, 32, 3, 32, 32), torch.rand(8, 32, 2) * 2 - 1
faults = []
for i in range(11):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step.step(obs, act, 0.996)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(*faults[3:])
"""

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="malloc tuning exists on glibc only")


def _faults_per_step(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return [int(f) for f in out.stdout.split()]


@glibc
def test_kept_memory_removes_the_page_faults_of_a_training_step():
    released, kept = _faults_per_step("release"), _faults_per_step("keep")
    # measured (4 steps, 3 runs): 43,000-52,000 faults with glibc's defaults (a step touches tens of
    # MB afresh), 1-3 with the freed blocks kept. A step of the kept run can still fault now and then
    # for reasons of its own (one fresh-clone CI run: 65, 1, 898, 1), so the typical step is compared
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    assert len(released) == len(kept) == 8
    assert median(released) > 3_000 and sum(released) > 30_000
    assert median(kept) < 50 and 20 * sum(kept) < sum(released)


@glibc
def test_keep_freed_memory_reports_success_once_per_process():
    from hjepa.accel import keep_freed_memory

    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # cached: mallopt is called once


@pytest.mark.parametrize("keep", [True, False])
def test_trainer_keeps_host_memory_on_a_cpu_as_configured(tmp_path, tiny_overrides, monkeypatch, keep):
    import hjepa.train as train
    from hjepa.api import compose

    calls = []
    monkeypatch.setattr(train, "keep_freed_memory", lambda: calls.append(1) or True)
    cfg = compose([*tiny_overrides, "model.depth=1", f"train.keep_host_memory={str(keep).lower()}",
                   "tracking.enabled=false"], out_dir=str(tmp_path))
    train.Trainer(cfg)
    assert calls == ([1] if keep else [])
