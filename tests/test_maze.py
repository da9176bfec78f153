"""The rooms maze layout: a spanning tree of doorways, walls where doors are closed, room-graph distances."""

import numpy as np
import pytest

from hjepa.data.rooms import RoomsEnv, crossing_rate, generate_rooms


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_maze_is_a_spanning_tree(seed):
    env = RoomsEnv((3, 3), layout="maze", layout_seed=seed)
    assert env.v_open.sum() + env.h_open.sum() == env.num_rooms - 1  # a tree has R-1 edges
    assert (env.room_distances >= 0).all()  # ...and connects every room
    assert (env.room_distances == env.room_distances.T).all()
    assert len(env.doorways()) == env.num_rooms - 1


def test_benchmark_maze_seed0_layout_is_fixed():
    env = RoomsEnv((3, 3), layout="maze", layout_seed=0)
    assert env.v_open.astype(int).tolist() == [[1, 0, 1], [1, 1, 1]]
    assert env.h_open.astype(int).tolist() == [[0, 1, 0], [1, 0, 1]]
    assert env.room_distances.max() == 7
    assert env.room_path(0, 2) == [0, 1, 2]
    assert env.room_distances[0, 6] == 6  # rooms 0 and 6 share a closed wall: the way round is long


def test_open_layout_has_every_door():
    env = RoomsEnv((3, 3), layout="open")
    assert len(env.doorways()) == 12
    assert env.room_distances[0, 8] == 4


def test_closed_door_blocks_and_open_door_passes():
    env = RoomsEnv((3, 3), layout="maze", layout_seed=0)
    # wall x=1, row 1 is closed (v_open[0, 1] = 0); row 0 is open
    blocked = env.step(np.array([[0.9, 1.5]]), np.array([[1.0, 0.0]]))
    assert blocked[0, 0] < 1.0 and env.room_id(blocked)[0] == 3
    passed = env.step(np.array([[0.95, 0.5]]), np.array([[1.0, 0.0]]))
    assert passed[0, 0] > 1.0 and env.room_id(passed)[0] == 1
    # the renderer draws the closed doorway as wall and leaves the open one light
    env64 = RoomsEnv((3, 3), layout="maze", layout_seed=0, image_size=96)
    bg = env64._background[0]
    col = int(1 / 3 * 96)  # x = 1
    assert bg[int((1 - 1.5 / 3) * 96), col - 1: col + 1].min() < 0.2  # closed: dark
    assert bg[int((1 - 0.5 / 3) * 96), col - 1: col + 1].max() > 0.5  # open: light


def test_door_between_and_room_path():
    env = RoomsEnv((3, 3), layout="maze", layout_seed=0)
    path = env.room_path(6, 2)
    assert len(path) - 1 == env.room_distances[6, 2]
    for a, b in zip(path, path[1:]):
        assert b in env.room_neighbours(a)
        d = env.door_between(a, b)
        assert np.isclose(d, np.round(d * 2) / 2).all()
    with pytest.raises(ValueError, match="not adjacent"):
        env.door_between(0, 8)


def test_maze_exploration_crosses_doorways():
    traj = generate_rooms(16, 64, 0, grid=(3, 3), layout="maze", layout_seed=0)
    rate = crossing_rate(traj.state, traj.factor_names)
    assert 0.02 < rate < 0.3
    with pytest.raises(ValueError, match="layout"):
        RoomsEnv((3, 3), layout="spiral")


def test_geodesic_distance_goes_round_walls():
    env = RoomsEnv((3, 3), layout="maze", layout_seed=0)
    goal = np.array([0.5, 1.5])  # room 3, just above room 0 through a closed wall
    d = env.geodesic_distance(np.array([[0.5, 0.5], [0.5, 1.2]]), goal)
    assert np.isclose(d[1], 0.3)  # same room: straight line
    assert d[0] > 5.0  # rooms 0 -> 3 are 7 doorways apart
    open_env = RoomsEnv((3, 3), layout="open")
    assert np.isclose(open_env.geodesic_distance(np.array([[0.5, 0.5]]), goal)[0], 1.0)  # through the open door
