"""Why a PointMaze planner stays pinned to a wall beside its goal: the energy of moving states.

    python experiments/pointmaze_velocity_trap.py runs/pointmaze_geo01 --start 2.85 2.0 --goal 2.3 2.2

A model trained on PointMaze's state ``(x, y, ẋ, ẏ)`` is given the goal ``(x_g, y_g, 0, 0)``: the ball
at rest. From a ball at rest at ``--start`` (here beside the right wall, 0.57 m from the goal, no
wall between), each of 16 actions (8 directions, force 0.3 and 1.0) is held for ``--horizon``
planned steps, in the true simulator and in the model's level-0 rollout (``CandidateRollout``, as
the planners imagine it). Per action it prints the true end state and its distance to the goal, and
the energy to the goal at level 0 and at the top level — of the *predicted* end latent (top level:
held still, as ``planner=graph`` scores it) and of the *true* end state encoded held still.

Pushing into the wall ends at rest, 0.6-0.9 m from the goal; pushing toward the goal ends moving,
0.3 m from it. Where the energy ranks the first lower, MPC toward the goal keeps the ball on the wall
(docs/planning.md, "Where the remaining episodes fail"). ``--goal-velocity any`` scores the same
states by their nearest member of the goal set that ``hjepa-plan eval.goal_velocity=any`` uses.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from hjepa.api import load_run
from hjepa.planning.goals import encode_held
from hjepa.planning.graph import held_summary
from hjepa.planning.planners import History, set_distance
from hjepa.planning.rollout import CandidateRollout
from hjepa.planning.worlds import PointMazeWorld


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a PointMaze run (checkpoint, run directory or MLflow run id), data.obs=state")
    ap.add_argument("--start", type=float, nargs=2, default=[2.85, 2.0])
    ap.add_argument("--goal", type=float, nargs=2, default=[2.3, 2.2])
    ap.add_argument("--horizon", type=int, default=8, help="planned steps each action is held")
    ap.add_argument("--goal-velocity", choices=("rest", "any"), default="rest",
                    help="any: energies to the nearest member of the goal set (hjepa-plan eval.goal_velocity=any)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    run = load_run(args.run)
    m, d = run.model.eval(), run.cfg.data
    world = PointMazeWorld(d.env_id, d.obs, d.image_size, d.action_repeat, args.goal_velocity)
    ad = int(m.levels[0].action_dim)
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    acts = np.concatenate([f * np.stack([np.cos(angles), np.sin(angles)], 1) for f in (0.3, 1.0)]).astype(np.float32)
    k, top = len(acts), m.depth - 1
    start, goal = np.array([args.start]), np.array([args.goal])

    obs, pos = world.reset(np.repeat(start, k, 0), np.repeat(goal, k, 0))
    hist = History(obs, pos, ad)
    frames, a = hist.window(np.arange(1), m.min_clip_len())
    with torch.no_grad():
        zs, _, macro = m.encode(world.to_model(frames), torch.from_numpy(a))
        _, ctx = m.predict(zs, macro)
        roll = CandidateRollout(m, 0)
        roll.prefix(zs[0], macro[0][:, :-1], ctx[0])
        pred = roll.imagine(torch.from_numpy(np.repeat(acts[:, None], args.horizon, 1))[None])[0, :, -1]  # (K, D_0)
        for _ in range(args.horizon):
            obs, pos = world.step(acts, np.ones(k, bool))
        true = encode_held(m, world.to_model(obs), ad)
        g = encode_held(m, world.to_model(world.goal_set(goal)[0]), ad)  # [(G, D_k)]: the goal set's members

        def energy(z, lvl):  # latents (K, D) to the nearest member of the goal set, as the planners score: (K,)
            return set_distance(m, z[None, :, None], g[lvl][None])[0, :, 0].numpy()

        e0_pred, e0_true = energy(pred, 0), energy(true[0], 0)
        et_pred = energy(held_summary(m, pred, top), top) if top else e0_pred
        et_true = energy(true[top], top)
    world.close()

    print(f"start {args.start} at rest, goal {args.goal} (velocity: {args.goal_velocity}), each action held "
          f"{args.horizon} planned steps")
    print(f"{'action':>14} | {'true end (x, y, vx, vy)':>28} | {'to goal':>7} | {'E0 pred':>7} {'E0 true':>7} | "
          f"{'E' + str(top) + ' pred':>8} {'E' + str(top) + ' true':>8}")
    for i in np.argsort(e0_pred):
        end = ", ".join(f"{v:+.2f}" for v in obs[i])
        print(f"({acts[i, 0]:+.2f}, {acts[i, 1]:+.2f}) | {end:>28} | {np.linalg.norm(obs[i, :2] - goal[0]):7.2f} | "
              f"{e0_pred[i]:7.3f} {e0_true[i]:7.3f} | {et_pred[i]:8.4f} {et_true[i]:8.4f}")


if __name__ == "__main__":
    main()
