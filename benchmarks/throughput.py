"""Training-step throughput against the hardware's measured matmul peak — the same code on CPU and GPU.

    python benchmarks/throughput.py                          # CPU suite (2 threads by default: --threads)
    python benchmarks/throughput.py --suite gpu --json out.json
    python benchmarks/throughput.py --only default-d1,default-d3 --reps 30

For every config: ms/step, clips/s and frames/s, FLOPs per step (``torch.utils.flop_counter``,
forward + backward, counted once in eager mode), achieved FLOP/s as a share of the matmul peak
measured in the same run (fp32 on a CPU; bf16 and tf32 on a GPU), and peak memory (CUDA: max
allocated; CPU: the process's peak RSS). The step timed is ``hjepa.accel.TrainStep`` — exactly what
``hjepa-train`` runs — on random frames already on the device. ``bare-*`` rows time a ViT encoder
alone (the same frames, a mean-square loss, fused AdamW): the practical ceiling for a model built
around that encoder. Timings: warm-up steps (and compilation) first, then ``--reps`` steps between
two device synchronisations, repeated ``--rounds`` times; the median round is reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # an installed / PYTHONPATH hjepa comes first

from hjepa.api import build_model, compose  # noqa: E402

try:
    from hjepa.accel import keep_freed_memory
except ImportError:  # an hjepa from before hjepa.accel.host_memory
    keep_freed_memory = None

try:
    from hjepa.accel import TrainStep, build_adamw
except ImportError:  # an hjepa from before hjepa.accel: time its trainer's step, for before/after figures
    TrainStep = build_adamw = None

BASE = ["tracking.enabled=false"]
VIT_B = ["model.encoder=vit", "model.encoder_width=768", "model.vit_layers=12", "model.pred_heads=12",
         "model.patch_size=8"]


@dataclass
class Case:
    name: str
    overrides: list[str] = field(default_factory=list)
    precision: str = "fp32"
    compile: bool = False
    compile_mode: str = "default"
    channels_last: bool = False
    bare: str | None = None  # "timm" | "hjepa": time a bare ViT encoder of the model's size instead


def suites() -> dict[str, list[Case]]:
    d = lambda k: [f"model.depth={k}"]  # noqa: E731
    vit = ["model.encoder=vit", "model.encoder_width=64", "model.vit_layers=2"]
    cpu = [Case("default-d1", d(1)), Case("default-d2", d(2)), Case("default-d3", d(3)),
           Case("vit-d1", d(1) + vit), Case("vit-d2", d(2) + vit), Case("vit-d3", d(3) + vit),
           Case("bare-vit-hjepa", d(1) + vit, bare="hjepa"),
           Case("default-d2-bf16", d(2), precision="bf16"),
           Case("default-d1-compile", d(1), compile=True), Case("vit-d1-compile", d(1) + vit, compile=True)]
    scale = ["experiment=gpu_scale"]
    gpu = [Case("default-d1", d(1)), Case("default-d3", d(3)),
           Case("default-d1-bf16", d(1), precision="bf16"),
           Case("default-d1-chlast", d(1), channels_last=True),
           Case("default-d1-b256", d(1) + ["data.batch_size=256"]),
           Case("vit-d3-b256", d(3) + vit + ["data.batch_size=256"]),
           Case("gpu_scale", scale, precision="bf16"),
           Case("bare-vitb-timm", scale, precision="bf16", bare="timm"),
           Case("bare-vitb-hjepa", scale, precision="bf16", bare="hjepa"),
           Case("default-d1-graphs", d(1), compile=True, compile_mode="reduce-overhead"),
           Case("default-d3-graphs", d(3), compile=True, compile_mode="reduce-overhead"),
           Case("gpu_scale-compile", scale, precision="bf16", compile=True)]
    return {"cpu": cpu, "gpu": gpu}


# ----------------------------------------------------------------------------- peaks
CLOCK = time.perf_counter  # --clock process: CPU time of this process (a CPU shared with other jobs)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> float:
    """FLOP/s of an ``n³`` matrix product on random data (median of ``reps`` timed after a warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        sync(device)
        t0 = CLOCK()
        a @ b
        sync(device)
        times.append(CLOCK() - t0)
    return 2 * n ** 3 / statistics.median(times)


def measure_peaks(device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        fp32 = matmul_peak(device, torch.float32, 8192, 10)
        torch.backends.cuda.matmul.allow_tf32 = True
        tf32 = matmul_peak(device, torch.float32, 8192, 10)
        torch.backends.cuda.matmul.allow_tf32 = prev
        return {"bf16": matmul_peak(device, torch.bfloat16, 8192, 20), "tf32": tf32, "fp32": fp32}
    return {"fp32": max(matmul_peak(device, torch.float32, n, 10) for n in (512, 1024))}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- steps
class BareEncoderStep:
    """A bare ViT encoder trained on the frames alone: the ceiling for a model around it."""

    def __init__(self, cfg, kind: str, device: torch.device, precision: str, obs_shape):
        m = cfg.model
        if kind == "timm":
            import timm

            self.net = timm.models.vision_transformer.VisionTransformer(
                img_size=obs_shape[-1], patch_size=m.patch_size, embed_dim=m.encoder_width, depth=m.vit_layers,
                num_heads=m.pred_heads, num_classes=m.latent_dim, global_pool="avg", class_token=False)
        else:
            from hjepa.models import build_frame_encoder

            self.net = build_frame_encoder("vit", tuple(obs_shape), m.latent_dim, m.encoder_width,
                                           patch_size=m.patch_size, vit_layers=m.vit_layers, heads=m.pred_heads)
        self.net.to(device)
        self.model, self.device, self.precision = self.net, device, precision
        self.opt = build_adamw(self.net.parameters(), cfg.optim, device)
        self.frames_only = kind == "timm"

    def step(self, obs, act, momentum):
        from hjepa.accel import autocast

        x = obs.flatten(0, 1) if self.frames_only else obs
        with autocast(self.device, self.precision):
            loss = self.net(x).float().square().mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss


class LegacyStep:
    """The training step of hjepa before ``hjepa.accel`` (foreach AdamW, host-side finite checks)."""

    def __init__(self, model, cfg, device):
        self.model, self.device, self.clip = model, device, cfg.optim.grad_clip
        o = cfg.optim
        self.opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=o.lr,
                                     betas=tuple(o.betas), weight_decay=o.weight_decay)

    def _forward_losses(self, obs, act):
        return (self.model.losses(self.model(obs, act)).total,)

    def step(self, obs, act, momentum):
        loss = self._forward_losses(obs, act)[0]
        self.opt.zero_grad(set_to_none=True)
        if not bool(torch.isfinite(loss)):
            return None
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        if not bool(torch.isfinite(gnorm)):
            return None
        self.opt.step()
        self.model.update_targets(momentum)
        return loss


def build_case(case: Case, device: torch.device):
    cfg = compose(BASE + case.overrides)
    c, s = 3, int(cfg.data.image_size)
    b, t = int(cfg.data.batch_size), int(cfg.data.clip_len)
    g = torch.Generator().manual_seed(0)
    obs = (torch.randint(0, 256, (b, t, c, s, s), generator=g).float() / 255).to(device)
    act = (torch.rand(b, t, 2, generator=g) * 2 - 1).to(device)
    if case.bare:
        return BareEncoderStep(cfg, case.bare, device, case.precision, (c, s, s)), obs, act, cfg
    torch.manual_seed(0)
    model = build_model(cfg, obs_shape=(c, s, s), action_dim=2).to(device)
    if TrainStep is None:
        return LegacyStep(model, cfg, device), obs, act, cfg
    opt = build_adamw([p for p in model.parameters() if p.requires_grad], cfg.optim, device)
    step = TrainStep(model, opt, device=device, precision=case.precision, compile=case.compile,
                     compile_mode=case.compile_mode, grad_clip=cfg.optim.grad_clip, channels_last=case.channels_last)
    return step, obs, act, cfg


def count_flops(step, obs, act) -> int:
    """FLOPs of one forward + backward (eager; the optimizer's elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    fn = getattr(step, "_forward_losses", None)
    counter = FlopCounterMode(display=False)
    with counter:
        if fn is not None:
            loss = fn(obs, act)[0]
        else:
            from hjepa.accel import autocast

            x = obs.flatten(0, 1) if step.frames_only else obs
            with autocast(step.device, step.precision):
                loss = step.net(x).float().square().mean()
        loss.backward()
    step.model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def time_case(step, obs, act, device, warmup: int, reps: int, rounds: int) -> tuple[float, float]:
    """(median ms/step over rounds, warm-up seconds incl. compilation)."""
    t0 = CLOCK()
    for _ in range(warmup):
        step.step(obs, act, 0.996)
    sync(device)
    warm = CLOCK() - t0
    per_step = []
    for _ in range(rounds):
        sync(device)
        t0 = CLOCK()
        for _ in range(reps):
            step.step(obs, act, 0.996)
        sync(device)
        per_step.append((CLOCK() - t0) / reps)
    return statistics.median(per_step) * 1e3, warm


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--suite", default=None, help="cpu | gpu (default: by device)")
    ap.add_argument("--only", default=None, help="comma-separated case names")
    ap.add_argument("--reps", type=int, default=None, help="steps per timed round (default 10 CPU, 20 GPU)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", default="wall", choices=["wall", "process"],
                    help="process: time steps and peaks by this process's CPU time (CPU only; on a machine "
                         "shared with other jobs, where wall time measures the queue)")
    ap.add_argument("--host-memory", default="keep", choices=["keep", "release"],
                    help="CPU: keep: malloc keeps freed blocks, as hjepa-train does (train.keep_host_memory); "
                         "release: glibc's defaults (the step page-faults on the tensors it allocates again)")
    ap.add_argument("--json", default=None, help="write the results here (rewritten after every case)")
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "process" else time.perf_counter
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    kept = device.type == "cpu" and args.host_memory == "keep" and keep_freed_memory is not None and keep_freed_memory()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 training uses TF32 matmuls on CUDA
        torch.backends.cudnn.allow_tf32 = True
    suite = args.suite or ("gpu" if device.type == "cuda" else "cpu")
    cases = suites()[suite]
    if args.only:
        want = args.only.split(",")
        cases = [c for c in suites()["cpu"] + suites()["gpu"] if c.name in want]
        cases = list({c.name: c for c in cases}.values())
    reps = args.reps or (20 if device.type == "cuda" else 10)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    peaks = measure_peaks(device)
    head = {"device": name, "torch": torch.__version__, "threads": torch.get_num_threads(), "clock": args.clock,
            "host_memory": "keep" if kept else "release",
            "peaks_tflops": {k: v / 1e12 for k, v in peaks.items()}}
    print(f"# {name} | torch {torch.__version__} | threads {torch.get_num_threads()} | host memory "
          f"{head['host_memory']} | matmul peak TFLOP/s: "
          + ", ".join(f"{k} {v / 1e12:.3g}" for k, v in peaks.items()), flush=True)
    rows: list[dict] = []
    for case in cases:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        try:
            step, obs, act, cfg = build_case(case, device)
            flops = count_flops(step, obs, act)
            ms, warm = time_case(step, obs, act, device, args.warmup, reps, args.rounds)
        except Exception as e:  # noqa: BLE001 — one failing case (e.g. out of memory) must not lose the others
            print(f"{case.name}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}",
                  flush=True)
            rows.append({"name": case.name, "error": f"{type(e).__name__}: {e}"[:2000]})
            continue
        b, t = int(cfg.data.batch_size), int(cfg.data.clip_len)
        peak_key = "fp32" if device.type == "cpu" else ("bf16" if case.precision == "bf16" else "tf32")
        achieved = flops / (ms / 1e3)
        row = {"name": case.name, "overrides": case.overrides, "precision": case.precision, "compile": case.compile,
               "compile_mode": case.compile_mode if case.compile else None, "channels_last": case.channels_last,
               "bare": case.bare, "batch": b, "clip_len": t, "image_size": int(cfg.data.image_size),
               "ms_per_step": ms, "clips_per_s": b / (ms / 1e3), "frames_per_s": b * t / (ms / 1e3),
               "gflop_per_step": flops / 1e9, "tflops": achieved / 1e12, "peak": peak_key,
               "share_of_peak": achieved / peaks[peak_key], "share_of_bf16_peak": achieved / peaks.get("bf16", peaks["fp32"]),
               "peak_mem_mb": peak_memory_mb(device), "warmup_s": warm}
        rows.append(row)
        print(f"{case.name:22s} {ms:9.2f} ms  {row['frames_per_s']:10.0f} frames/s  {flops / 1e9:9.2f} GFLOP  "
              f"{100 * row['share_of_peak']:6.2f}% of {peak_key}  mem {row['peak_mem_mb']:8.0f} MB  "
              f"(warm-up {warm:.1f} s)", flush=True)
        del step
        if args.json:
            Path(args.json).write_text(json.dumps({**head, "rows": rows}, indent=2))
    print_table(head, rows)
    return rows


def print_table(head: dict, rows: list[dict]) -> None:
    print(f"\n{head['device']}, torch {head['torch']}, matmul peaks (TFLOP/s): "
          + ", ".join(f"{k} {v:.3g}" for k, v in head["peaks_tflops"].items()))
    print("| config | ms/step | frames/s | GFLOP/step | share of peak | peak mem (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['name']} | failed: {r['error'][:60]} | | | | |")
            continue
        print(f"| {r['name']} | {r['ms_per_step']:.2f} | {r['frames_per_s']:.0f} | {r['gflop_per_step']:.2f} | "
              f"{100 * r['share_of_peak']:.2f}% {r['peak']} | {r['peak_mem_mb']:.0f} |")


if __name__ == "__main__":
    main()
