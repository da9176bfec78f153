"""The rooms environment: a point mass in a grid of rooms joined by doorways.

World coordinates: the map is ``[0, cols] × [0, rows]``, each room a unit square. Interior walls
lie on the integer lines ``x = 1..cols-1`` and ``y = 1..rows-1``; each wall segment between two
adjacent rooms has one doorway of width ``door_width`` centred on the segment. Motion is
integrated axis by axis (x, then y), so a move crosses a wall only at a known coordinate, and a
crossing outside a doorway is stopped just before the wall. Everything is vectorised over
episodes in numpy and deterministic given the seed.

Layouts: ``open`` puts a doorway in every wall segment; ``maze`` keeps doorways only on a random
spanning tree of the room graph (seeded by ``layout_seed``), so adjacent rooms are often not
connected and reaching a far room needs a detour through the tree — the planning benchmark.

Factors (``state``): ``pos_x, pos_y, vel_x, vel_y, room_id`` — position and velocity are fast
factors, the room (``row * cols + col``) a slow one.
"""

from __future__ import annotations

import numpy as np

from .trajectories import Trajectories

__all__ = ["RoomsEnv", "generate_rooms", "ROOMS_FACTORS", "LAYOUTS", "crossing_rate"]

ROOMS_FACTORS = ["pos_x", "pos_y", "vel_x", "vel_y", "room_id"]
_WALL_EPS = 1e-3
LAYOUTS = ("open", "maze")


def _spanning_tree_doors(rows: int, cols: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Doorways of a uniformly shuffled Kruskal spanning tree of the ``rows × cols`` room graph.

    Returns ``v_open (cols-1, rows)`` — wall ``x = c+1`` has a doorway in row ``r`` — and
    ``h_open (rows-1, cols)`` — wall ``y = r+1`` has a doorway in column ``c``.
    """
    rng = np.random.default_rng(seed)
    edges = [("v", c, r) for c in range(cols - 1) for r in range(rows)]
    edges += [("h", r, c) for r in range(rows - 1) for c in range(cols)]
    parent = list(range(rows * cols))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    v_open, h_open = np.zeros((max(cols - 1, 0), rows), bool), np.zeros((max(rows - 1, 0), cols), bool)
    for e in rng.permutation(len(edges)):
        kind, i, j = edges[e]
        a, b = (j * cols + i, j * cols + i + 1) if kind == "v" else (i * cols + j, (i + 1) * cols + j)
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
            (v_open if kind == "v" else h_open)[i, j] = True
    return v_open, h_open


class RoomsEnv:
    """Vectorised rooms dynamics and renderer (``n`` independent point masses)."""

    def __init__(self, grid: tuple[int, int] = (2, 2), door_width: float = 0.4, max_speed: float = 0.12,
                 image_size: int = 32, agent_radius_px: float = 1.6, layout: str = "open", layout_seed: int = 0):
        self.rows, self.cols = int(grid[0]), int(grid[1])
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"rooms grid must be at least 1x1, got {grid}")
        if not 0 < door_width < 1:
            raise ValueError(f"door_width must lie in (0, 1), got {door_width}")
        if not 0 < max_speed < 0.5:
            raise ValueError(f"max_speed must lie in (0, 0.5) room widths per step, got {max_speed}")
        if layout not in LAYOUTS:
            raise ValueError(f"unknown rooms layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        self.door_width, self.max_speed = door_width, max_speed
        self.image_size, self.agent_radius_px = image_size, agent_radius_px
        self.layout, self.layout_seed = layout, int(layout_seed)
        if layout == "open":
            self.v_open = np.ones((self.cols - 1, self.rows), bool)
            self.h_open = np.ones((self.rows - 1, self.cols), bool)
        else:
            self.v_open, self.h_open = _spanning_tree_doors(self.rows, self.cols, self.layout_seed)
        self.room_distances = self._room_distances()
        self._background = self._render_background()

    @property
    def num_rooms(self) -> int:
        return self.rows * self.cols

    # ----------------------------------------------------------------- geometry
    def in_door(self, along: np.ndarray) -> np.ndarray:
        """Whether coordinate ``along`` lies in the doorway gap of its wall segment (open or not)."""
        return np.abs(along - (np.floor(along) + 0.5)) < self.door_width / 2

    def door_open(self, axis: int, wall: np.ndarray, along: np.ndarray) -> np.ndarray:
        """Whether the segment of interior wall line ``wall`` (``x = wall`` for ``axis`` 0, ``y = wall``
        for axis 1) that contains coordinate ``along`` of the other axis has a doorway."""
        table = self.v_open if axis == 0 else self.h_open
        n_seg = self.rows if axis == 0 else self.cols
        if table.size == 0:
            return np.zeros(np.shape(wall), bool)
        w = np.clip(np.asarray(wall, np.int64) - 1, 0, table.shape[0] - 1)
        seg = np.clip(np.floor(along).astype(np.int64), 0, n_seg - 1)
        return table[w, seg]

    def passable(self, axis: int, wall: np.ndarray, along: np.ndarray) -> np.ndarray:
        """Whether a crossing of interior wall ``wall`` at coordinate ``along`` passes an open doorway."""
        return self.in_door(along) & self.door_open(axis, wall, along)

    # ----------------------------------------------------------------- the room graph
    def room_neighbours(self, room: int) -> list[int]:
        """Rooms joined to ``room`` by an open doorway."""
        r, c = divmod(int(room), self.cols)
        out = []
        if c > 0 and self.v_open[c - 1, r]:
            out.append(room - 1)
        if c < self.cols - 1 and self.v_open[c, r]:
            out.append(room + 1)
        if r > 0 and self.h_open[r - 1, c]:
            out.append(room - self.cols)
        if r < self.rows - 1 and self.h_open[r, c]:
            out.append(room + self.cols)
        return out

    def _room_distances(self) -> np.ndarray:
        """All-pairs shortest-path lengths of the room graph through open doorways, ``(R, R)``."""
        n = self.num_rooms
        dist = np.full((n, n), -1, np.int64)
        for s in range(n):
            dist[s, s], frontier = 0, [s]
            while frontier:
                nxt = []
                for u in frontier:
                    for v in self.room_neighbours(u):
                        if dist[s, v] < 0:
                            dist[s, v] = dist[s, u] + 1
                            nxt.append(v)
                frontier = nxt
        return dist

    def room_path(self, start: int, goal: int) -> list[int]:
        """The rooms of the shortest path from ``start`` to ``goal`` (both included)."""
        path, cur = [int(start)], int(start)
        while cur != goal:
            cur = min(self.room_neighbours(cur), key=lambda v: self.room_distances[v, goal])
            path.append(cur)
        return path

    def door_between(self, a: int, b: int) -> np.ndarray:
        """Centre ``(2,)`` of the doorway joining adjacent rooms ``a`` and ``b``."""
        (ra, ca), (rb, cb) = divmod(int(a), self.cols), divmod(int(b), self.cols)
        if ra == rb and abs(ca - cb) == 1:
            return np.array([max(ca, cb), ra + 0.5])
        if ca == cb and abs(ra - rb) == 1:
            return np.array([ca + 0.5, max(ra, rb)])
        raise ValueError(f"rooms {a} and {b} are not adjacent")

    def geodesic_distance(self, pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Length of the shortest path through open doorways, ``pos (N, 2)``, ``goal (2,)`` → ``(N,)``.

        Rooms are convex, so the path is straight within a room and passes each doorway of the
        shortest room path at its centre (exact up to the doorway's width).
        """
        pos = np.asarray(pos, np.float64).reshape(-1, 2)
        goal = np.asarray(goal, np.float64)
        g_room = int(self.room_id(goal))
        out = np.empty(len(pos))
        for room in np.unique(self.room_id(pos)):
            sel = self.room_id(pos) == room
            path = self.room_path(int(room), g_room)
            doors = [self.door_between(a, b) for a, b in zip(path, path[1:])]
            pts = np.asarray([*doors, goal])
            tail = np.linalg.norm(np.diff(pts, axis=0), axis=1).sum() if len(pts) > 1 else 0.0
            out[sel] = np.linalg.norm(pos[sel] - pts[0], axis=1) + tail
        return out

    def room_centre(self, room: np.ndarray) -> np.ndarray:
        r, c = np.divmod(np.asarray(room), self.cols)
        return np.stack([c + 0.5, r + 0.5], -1).astype(np.float64)

    def room_id(self, pos: np.ndarray) -> np.ndarray:
        col = np.clip(np.floor(pos[..., 0]), 0, self.cols - 1)
        row = np.clip(np.floor(pos[..., 1]), 0, self.rows - 1)
        return (row * self.cols + col).astype(np.int64)

    def _move_axis(self, pos: np.ndarray, delta: np.ndarray, axis: int) -> np.ndarray:
        """Move coordinate ``axis`` of ``pos`` ``(n, 2)`` by ``delta`` ``(n,)``, stopping at walls."""
        limit = self.cols if axis == 0 else self.rows
        other = pos[:, 1 - axis]
        old = pos[:, axis]
        new = np.clip(old + delta, _WALL_EPS, limit - _WALL_EPS)
        # |delta| < 0.5 so at most one interior wall line lies between old and new
        lo, hi = np.minimum(old, new), np.maximum(old, new)
        wall = np.floor(hi)
        crosses = (wall > lo) & (wall >= 1) & (wall <= limit - 1)
        blocked = crosses & ~self.passable(axis, wall, other)
        stop = np.where(new > old, wall - _WALL_EPS, wall + _WALL_EPS)
        out = pos.copy()
        out[:, axis] = np.where(blocked, stop, new)
        return out

    def step(self, pos: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Next positions for actions in ``[-1, 1]²`` (velocity commands scaled by ``max_speed``)."""
        delta = np.clip(action, -1.0, 1.0) * self.max_speed
        pos = self._move_axis(pos, delta[:, 0], 0)
        return self._move_axis(pos, delta[:, 1], 1)

    def doorways(self) -> np.ndarray:
        """Centres of every open doorway, ``(K, 2)``."""
        d = [(c, r + 0.5) for c in range(1, self.cols) for r in range(self.rows) if self.v_open[c - 1, r]]
        d += [(c + 0.5, r) for r in range(1, self.rows) for c in range(self.cols) if self.h_open[r - 1, c]]
        return np.asarray(d, dtype=np.float64).reshape(-1, 2)

    # ----------------------------------------------------------------- rendering
    def world_to_pixel(self, pos: np.ndarray) -> np.ndarray:
        """Pixel coordinates (column, row) of world positions; y points up in the world."""
        s = self.image_size
        px = pos[..., 0] / self.cols * s
        py = (1 - pos[..., 1] / self.rows) * s
        return np.stack([px, py], -1)

    def _render_background(self) -> np.ndarray:
        s = self.image_size
        centres = (np.arange(s) + 0.5) / s
        wx = centres * self.cols  # world x of pixel columns
        wy = (1 - centres) * self.rows  # world y of pixel rows
        half_px_x, half_px_y = self.cols / s * 0.6, self.rows / s * 0.6
        img = np.full((3, s, s), 0.82, dtype=np.float32)
        gx, gy = np.meshgrid(wx, wy)  # (s, s): [row, col]
        for c in range(1, self.cols):
            mask = (np.abs(gx - c) < half_px_x) & ~self.passable(0, np.full_like(gy, c), gy)
            img[:, mask] = 0.1
        for r in range(1, self.rows):
            mask = (np.abs(gy - r) < half_px_y) & ~self.passable(1, np.full_like(gx, r), gx)
            img[:, mask] = 0.1
        border = (gx < half_px_x) | (gx > self.cols - half_px_x) | (gy < half_px_y) | (gy > self.rows - half_px_y)
        img[:, border] = 0.1
        return img

    def render(self, pos: np.ndarray) -> np.ndarray:
        """Frames ``(..., 3, S, S)`` uint8 for positions ``(..., 2)``: walls dark, agent red disc."""
        lead = pos.shape[:-1]
        p = self.world_to_pixel(pos.reshape(-1, 2))  # (n, 2)
        s = self.image_size
        grid = np.arange(s) + 0.5
        d2 = (grid[None, None, :] - p[:, 0, None, None]) ** 2 + (grid[None, :, None] - p[:, 1, None, None]) ** 2
        disc = np.clip(self.agent_radius_px + 0.5 - np.sqrt(d2), 0.0, 1.0).astype(np.float32)  # (n, s, s)
        colour = np.array([0.9, 0.1, 0.1], dtype=np.float32)[None, :, None, None]
        img = self._background[None] * (1 - disc[:, None]) + colour * disc[:, None]
        return (img * 255 + 0.5).astype(np.uint8).reshape(*lead, 3, s, s)


def _exploration_actions(env: RoomsEnv, pos: np.ndarray, target: np.ndarray, rng: np.random.Generator,
                         noise: float) -> np.ndarray:
    """Head for ``target`` with noise: the random policy that crosses doorways."""
    d = target - pos
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
    a = d * rng.uniform(0.4, 1.0, size=(len(pos), 1)) + noise * rng.normal(size=pos.shape)
    return np.clip(a, -1.0, 1.0)


def crossing_rate(state: np.ndarray, factor_names: list[str] = ROOMS_FACTORS) -> float:
    """Doorway crossings per step of rooms trajectories ``state (N, L, F)`` (room changes / steps)."""
    room = state[..., factor_names.index("room_id")]
    return float((room[:, 1:] != room[:, :-1]).mean())


def generate_rooms(num_episodes: int, episode_len: int, seed: int, *, grid=(2, 2), door_width: float = 0.4,
                   max_speed: float = 0.12, image_size: int = 32, action_noise: float = 0.5,
                   retarget_prob: float = 0.05, layout: str = "open", layout_seed: int = 0) -> Trajectories:
    """Roll out the exploration policy: each point mass picks a waypoint — a doorway of its room
    (two thirds of the time) or a random point — and heads there with noisy velocity commands,
    re-drawing the waypoint when it is reached or, at random, with ``retarget_prob`` per step.

    Returns ``obs (N, L, 3, S, S)`` uint8, ``actions (N, L, 2)``, ``state (N, L, 5)``; the last
    action of each episode is drawn but has no observed consequence.
    """
    env = RoomsEnv(tuple(grid), door_width, max_speed, image_size, layout=layout, layout_seed=layout_seed)
    rng = np.random.default_rng(seed)
    n = num_episodes
    pos = np.stack([rng.uniform(0.15, env.cols - 0.15, n), rng.uniform(0.15, env.rows - 0.15, n)], 1)
    doors = env.doorways()

    door_normal = np.where(doors[:, :1] == np.round(doors[:, :1]), [[1.0, 0.0]], [[0.0, 1.0]])

    def new_targets(mask: np.ndarray) -> None:
        """Waypoints: 2/3 of the time just through a doorway of the current room, else anywhere
        (``maze``: anywhere in the current room, since a straight line elsewhere meets a wall)."""
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        k = idx.size
        rand_pt = np.stack([rng.uniform(0.1, env.cols - 0.1, k), rng.uniform(0.1, env.rows - 0.1, k)], 1)
        if env.layout == "maze":
            rand_pt = np.floor(pos[idx]) + rng.uniform(0.1, 0.9, size=(k, 2))
        if len(doors):
            p = pos[idx]
            # a doorway is adjacent when the agent is within one room width of it on both axes
            adj = (np.abs(doors[None] - p[:, None]) < np.where(door_normal[None] > 0, 1.0, 0.5)).all(-1)
            choice = np.array([rng.choice(np.flatnonzero(row)) if row.any() else -1 for row in adj])
            ok = choice >= 0
            d = doors[np.maximum(choice, 0)]
            nrm = door_normal[np.maximum(choice, 0)]
            side = np.sign(((d - p) * nrm).sum(1, keepdims=True) + 1e-9)  # through, away from us
            door_pt = d + side * nrm * 0.3
            use_door = ok & (rng.uniform(size=k) < 2 / 3)
            rand_pt = np.where(use_door[:, None], door_pt, rand_pt)
        target[idx] = rand_pt

    target = np.zeros_like(pos)
    new_targets(np.ones(n, bool))
    positions = np.zeros((n, episode_len, 2))
    actions = np.zeros((n, episode_len, 2), dtype=np.float32)
    for t in range(episode_len):
        positions[:, t] = pos
        reached = np.linalg.norm(target - pos, axis=1) < 0.1
        new_targets(reached | (rng.uniform(size=n) < retarget_prob))
        a = _exploration_actions(env, pos, target, rng, action_noise)
        actions[:, t] = a
        pos = env.step(pos, a)
    vel = np.zeros_like(positions)
    vel[:, 1:] = (positions[:, 1:] - positions[:, :-1]) / max_speed  # velocity seen in frames t-1 -> t
    state = np.concatenate([positions, vel, env.room_id(positions)[..., None]], -1).astype(np.float32)
    obs = env.render(positions)
    return Trajectories(obs, actions, state, list(ROOMS_FACTORS))
