"""Both tables of issue 11 (docs/objectives.md), from one command.

    python experiments/objectives_tables.py --steps 300 --seeds 0            # CPU-sized
    python experiments/objectives_tables.py --steps 3000 --seeds 0 1         # the full budget (GPU)
    python experiments/objectives_tables.py --world pendulum --steps 1500    # table 2 on Pendulum pixels

Runs (each a normal hjepa training run, tracked in MLflow when it is reachable; one torch thread):

* sample efficiency (equal steps, batch and data; wall time measured): ``next_step`` (SIGReg),
  ``masked``, ``pixel``, ``contrastive`` on the ``experiment=objectives`` settings (flat model,
  tubelet ViT encoder), evaluated at 100, 300, 1000 and 3000 steps (those <= ``--steps``);
* pretrain-then-hierarchy (equal total steps N = ``--steps``): (a) a depth-2 next-step hierarchy
  from scratch, N steps; (b) masked pretraining only, N steps (the run above); (c) masked
  pretraining N/2 steps, then the depth-2 hierarchy N/2 steps with level 0 initialised from it,
  frozen and fine-tuned; and a control: the same N/2 hierarchy steps on a frozen untrained level 0.

``--world pendulum`` runs table 2 only, on the first ``experiment=pendulum`` preset
(``PENDULUM_FIRST_PRESET``; Pendulum-v1 from 32 px frames, depth 2, the tubelet ViT at level 0),
with (b) its own masked run of N steps (``t2_masked``).

``--jobs NAME …`` runs only some runs (to spread them over processes); each run writes
``<out>/<name>-s<seed>.json``; ``--report`` prints the Markdown tables from those files. Every
probe is scored on the same held-out clips (``eval_batch`` seed 12345) and every seed is fixed
up front: the ``seed`` of the run (training) with the data seed 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

CHECKPOINTS = (100, 300, 1000, 3000)
OBJECTIVES = ("next_step", "masked", "pixel", "contrastive")
WORLDS = ("rooms", "pendulum")
# experiment=pendulum as it was when table 2 was measured (docs/simulators.md, "first preset"): an additive,
# detached top-down context, a level-0 predictor with full history, VICReg with its covariance term at level 1
PENDULUM_FIRST_PRESET = ["model.pred_history=[0,1]", "model.topdown_detach=true", "model.topdown_conditioning=add",
                         "regularizer.per_level_weight=[0.1,1.0]", "regularizer.cov_weight=0.04"]
# table 2's probe columns per world: (label, metric prefix, factor group); groups average their factors
T2_COLUMNS = {
    "rooms": [("pos L0", "eval/level0/", "pos"), ("vel L0", "eval/level0/", "vel"), ("room L0", "eval/level0/", "room_id"),
              ("pos L0 tokens", "eval/level0/tokens/", "pos"), ("room L0 tokens", "eval/level0/tokens/", "room_id"),
              ("pos L1", "eval/level1/", "pos"), ("vel L1", "eval/level1/", "vel"), ("room L1", "eval/level1/", "room_id"),
              ("RankMe L0", "eval/level0/", "rankme")],
    "pendulum": [("angle L0", "eval/level0/", "angle"), ("θ̇ L0", "eval/level0/", "theta_dot"),
                 ("angle L0 tokens", "eval/level0/tokens/", "angle"), ("θ̇ L0 tokens", "eval/level0/tokens/", "theta_dot"),
                 ("angle L1", "eval/level1/", "angle"), ("θ̇ L1", "eval/level1/", "theta_dot"),
                 ("RankMe L0", "eval/level0/", "rankme"), ("RankMe L1", "eval/level1/", "rankme")],
}
GROUPS = {"pos": ["pos_x", "pos_y"], "vel": ["vel_x", "vel_y"], "angle": ["cos_theta", "sin_theta"]}


def run_specs(steps: int, world: str = "rooms") -> dict[str, dict]:
    """name → {overrides, after (a run whose checkpoint it starts from)}."""
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; choose from {WORLDS}")
    half = steps // 2
    if world == "pendulum":  # the first issue-10 Pendulum preset (the one table 2 was measured with) + token encoder
        base = ["experiment=pendulum", *PENDULUM_FIRST_PRESET, "model.encoder=tubelet", "train.checkpoint_every=100000",
                "train.eval_every=100", "tracking.experiment=objectives"]
        flat = [*base, "model.depth=1", "regularizer.per_level=[sigreg]", "regularizer.per_level_weight=[0.1]",
                "model.pred_history=null", "model.idm_weight=null"]  # level 0 of the preset alone
        hier = base
        specs = {"t2_masked": {"overrides": [*flat, "objective=masked", f"train.steps={steps}"]}}
    else:
        flat = ["experiment=objectives", "train.checkpoint_every=100000"]
        hier = ["model.depth=2", "model.encoder=tubelet", "train.checkpoint_every=100000", "train.eval_every=100",
                "tracking.experiment=objectives"]
        specs = {f"t3_{o}": {"overrides": [*flat, f"objective={o}", f"train.steps={steps}"]} for o in OBJECTIVES}
    specs["t2_scratch"] = {"overrides": [*hier, f"train.steps={steps}"]}
    specs["t2_pretrain"] = {"overrides": [*flat, "objective=masked", f"train.steps={half}"]}
    for name, freeze in (("t2_frozen", "true"), ("t2_finetune", "false")):
        specs[name] = {"overrides": [*hier, f"train.steps={steps - half}", f"model.freeze_level0={freeze}"],
                       "after": "t2_pretrain"}
    # control: the same N/2 hierarchy steps on a frozen *untrained* level 0 (does pretraining matter?)
    specs["t2_frozen_random"] = {"overrides": [*hier, f"train.steps={steps - half}", "model.freeze_level0=true"]}
    return specs


def train_one(name: str, spec: dict, seed: int, out: Path, extra: list[str]) -> dict:
    from hjepa.api import compose
    from hjepa.train import Trainer

    run_dir = out / f"{name}-s{seed}"
    overrides = [*spec["overrides"], f"seed={seed}", "train.threads=1", "train.progress=false",
                 f"tracking.run_name={name}-s{seed}", *extra]
    if "after" in spec:
        overrides.append(f"model.init_from={out / (spec['after'] + f'-s{seed}')}")
    cfg = compose(overrides, out_dir=str(run_dir))
    trainer = Trainer(cfg)
    history: dict[int, dict] = {}
    clock = {"eval": 0.0}
    evaluate = trainer.evaluate

    def timed_evaluate():
        if trainer.step not in CHECKPOINTS and trainer.step != trainer.cfg.train.steps:
            return dict(trainer.last_metrics)  # only the table's columns are evaluated (saves time)
        t = time.time()
        m = evaluate()
        clock["eval"] += time.time() - t
        history[trainer.step] = {**m, "train_wall_s": time.time() - clock["start"] - clock["eval"]}
        save()  # after every evaluation, so a run cut short still reports its earlier columns
        return m

    def save() -> dict:
        record = {"name": name, "seed": seed, "overrides": overrides, "device": str(trainer.device),
                  "mlflow_run_id": trainer.tracker.run_id, "history": {str(k): v for k, v in sorted(history.items())}}
        (out / f"{name}-s{seed}.json").write_text(json.dumps(record, indent=1))
        return record

    trainer.evaluate = timed_evaluate
    if "after" not in spec:  # the untrained model: what the probes read from random features
        import torch

        rng = torch.get_rng_state()
        history[0] = {**trainer.objective.evaluate(trainer.eval_batch, trainer.data.factor_names, trainer.device),
                      "train_wall_s": 0.0}
        torch.set_rng_state(rng)
    clock["start"] = time.time()
    trainer.run()
    return save()


def _load(out: Path) -> dict[tuple[str, int], dict]:
    recs = {}
    for p in sorted(out.glob("*-s*.json")):
        r = json.loads(p.read_text())
        recs[(r["name"], int(r["seed"]))] = r
    return recs


def _fmt(vals: list[float]) -> str:
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}"


def report(out: Path, steps: int, world: str = "rooms") -> str:
    recs = _load(out)
    seeds = sorted({s for _, s in recs})
    lines = [f"seeds {seeds}; mean ± sd over seeds where there are several; device(s): "
             f"{sorted({r['device'] for r in recs.values()})}", ""]

    def final(name: str, seed: int) -> dict | None:
        r = recs.get((name, seed))
        if r is None:
            return None
        last = max(int(k) for k in r["history"])
        return r["history"][str(last)]

    # table 2: pretrain-then-hierarchy at equal total steps
    lines += [f"**Pretrain-then-hierarchy** ({world}, {steps} total steps each): held-out probe R², level 0 (L0) "
              "and the hierarchy's level 1 (L1)", ""]
    cols = T2_COLUMNS[world]
    lines += ["| run | " + " | ".join(c[0] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    masked_only = "t2_masked" if world == "pendulum" else "t3_masked"
    rows = (("(a) next-step hierarchy from scratch", "t2_scratch"), ("(b) masked pretraining only", masked_only),
            ("(c) masked, then hierarchy, level 0 frozen", "t2_frozen"),
            ("(c) masked, then hierarchy, level 0 fine-tuned", "t2_finetune"),
            ("control: untrained level 0 frozen, hierarchy only (N/2 steps)", "t2_frozen_random"))

    def value(m: dict, prefix: str, what: str) -> float | None:
        keys = [prefix + ("rankme" if k == "rankme" else f"probe_r2/{k}") for k in GROUPS.get(what, [what])]
        return statistics.mean(m[k] for k in keys) if all(k in m for k in keys) else None

    for label, name in rows:
        cells = []
        for _, prefix, what in cols:
            if name == masked_only and prefix != "eval/level0/tokens/":  # no latent: its level 0 is the tokens
                cells.append("–")
                continue
            vals = [value(m, prefix, what) for s in seeds if (m := final(name, s)) is not None]
            cells.append(_fmt([v for v in vals if v is not None]))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    groups = ", ".join(f"{g} = mean R² of {' and '.join(fs)}" for g, fs in GROUPS.items()
                       if any(c[2] == g for c in cols))
    lines.append(f"\n{groups}; L0 tokens: probes of the level-0 encoder's concatenated frame tokens")
    if world != "rooms":
        return "\n".join(lines)
    # table 3: sample efficiency
    points = [0] + [c for c in CHECKPOINTS if c <= steps]
    lines += ["", "**Sample efficiency** (flat model, tubelet ViT encoder, batch 16, same clips): held-out probe "
              "R² of position (mean of pos_x, pos_y) and room from the level-0 latent (64-d; masked has none) and "
              "from the encoder's concatenated frame tokens; RankMe; training wall time (evaluation excluded)", ""]
    head = ["objective", "steps", "pos (latent)", "room (latent)", "RankMe (latent)", "pos (tokens)",
            "room (tokens)", "RankMe (tokens)", "wall s"]
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]

    def pos(m, p):
        return (m[p + "probe_r2/pos_x"] + m[p + "probe_r2/pos_y"]) / 2

    for o in OBJECTIVES:
        for c in points:
            ms = [recs[(f"t3_{o}", s)]["history"].get(str(c)) for s in seeds if (f"t3_{o}", s) in recs]
            ms = [m for m in ms if m]
            if not ms:
                continue
            lat, tok = "eval/level0/", "eval/level0/tokens/"
            latent = o != "masked"
            cells = [_fmt([pos(m, lat) for m in ms]) if latent else "–",
                     _fmt([m[lat + "probe_r2/room_id"] for m in ms]) if latent else "–",
                     _fmt([m[lat + "rankme"] for m in ms]) if latent else "–",
                     _fmt([pos(m, tok) for m in ms]), _fmt([m[tok + "probe_r2/room_id"] for m in ms]),
                     _fmt([m[tok + "rankme"] for m in ms]), _fmt([m["train_wall_s"] for m in ms])]
            lines.append(f"| {o} | {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", choices=WORLDS, default="rooms", help="rooms: both tables; pendulum: table 2")
    ap.add_argument("--steps", type=int, default=3000, help="N: training steps of every run (table 2: total)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", type=Path, default=Path("outputs/objectives_tables"))
    ap.add_argument("--jobs", nargs="+", default=None, help="run only these (t3_next_step, t2_pretrain, ...)")
    ap.add_argument("--report", action="store_true", help="only print the tables from earlier runs")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run (e.g. train.device=cuda)")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    specs = run_specs(a.steps, a.world)
    if not a.report:
        names = a.jobs or list(specs)
        unknown = [n for n in names if n not in specs]
        if unknown:
            sys.exit(f"unknown job(s) {unknown}; choose from {list(specs)}")
        # a run that starts from another goes after it
        names = sorted(names, key=lambda n: "after" in specs[n])
        for seed in a.seeds:
            for n in names:
                t = time.time()
                train_one(n, specs[n], seed, a.out, a.overrides)
                print(f"[objectives_tables] {n} seed {seed}: {time.time() - t:.0f} s", flush=True)
    print(report(a.out, a.steps, a.world))


if __name__ == "__main__":
    main()
