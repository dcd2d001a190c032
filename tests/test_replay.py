from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recrl.errors import InvalidArgumentError, ShapeError
from recrl.replay import ReplayBuffer, SumTree

from .reference import replay as reference


def steps(values, width=3):
    """Observations [B, width] filled with each step's value, for easy tracing."""
    values = np.asarray(values, dtype=np.float32)
    return np.repeat(values[:, None], width, axis=1)


def add(buffer, values, terminals=None, truncations=None, width=3):
    values = np.asarray(values, dtype=np.float32)
    buffer.extend(
        steps(values, width),
        values,
        values,
        steps(values + 0.5, width),
        terminals=terminals,
        truncations=truncations,
    )


# Contract cases.


def test_stale_update_keeps_insertion_priority():
    buffer = ReplayBuffer(2, 3, seed=0)
    add(buffer, [0.0, 1.0])
    batch = buffer.sample(1)
    assert batch.indices.tolist() == [0]
    inserted = buffer.priorities()[0]

    add(buffer, [2.0])
    rejected = buffer.update_priorities([0], [100.0])
    assert rejected == 1
    assert buffer.stale_updates == 1
    assert buffer.priorities()[0] == inserted


def test_stale_update_with_stamps_is_rejected():
    buffer = ReplayBuffer(2, 3, seed=0)
    add(buffer, [0.0, 1.0])
    batch = buffer.sample(1)
    stamps = batch.stamps.clone()
    add(buffer, [2.0])
    assert buffer.update_priorities([0], [100.0], stamps) == 1
    assert buffer.stale_updates == 1


def test_fresh_update_is_applied():
    buffer = ReplayBuffer(4, 3, seed=0)
    add(buffer, [0.0, 1.0, 2.0])
    batch = buffer.sample(1)
    slot = int(batch.indices[0])
    assert buffer.update_priorities([slot], [7.0], batch.stamps) == 0
    assert buffer.priorities()[slot] == 7.0
    assert buffer.stale_updates == 0


def test_sum_tree_equal_priorities():
    tree = SumTree(3)
    for slot in range(3):
        tree.set(slot, 1.0)
    assert [tree.find_prefix(mass) for mass in (0.5, 1.5, 2.5)] == [0, 1, 2]


def test_sum_tree_integer_masses():
    tree = SumTree(3)
    for slot, priority in enumerate([10.0, 5.0, 2.0]):
        tree.set(slot, priority)
    slots = tree.find_prefix_many(np.arange(17, dtype=np.float64))
    assert np.bincount(slots, minlength=3).tolist() == [10, 5, 2]


def test_sum_tree_batched_set_and_its_errors():
    tree = SumTree(10)
    tree.set_many(np.array([3, 7, 3]), np.array([1.0, 2.0, 4.0]))
    assert (tree.get(3), tree.get(7), tree.total(), tree.max()) == (4.0, 2.0, 6.0, 4.0)
    with pytest.raises(InvalidArgumentError, match="expected a leaf below 10, got 10"):
        tree.set_many(np.array([1, 10]), np.array([1.0, 1.0]))
    with pytest.raises(InvalidArgumentError, match="expected leaves >= 0, got -1"):
        tree.set_many(np.array([-1]), np.array([1.0]))
    with pytest.raises(InvalidArgumentError, match="finite value >= 0, got NaN"):
        tree.set_many(np.array([1]), np.array([np.nan]))
    with pytest.raises(ShapeError):
        tree.set_many(np.array([1, 2]), np.array([1.0]))
    with pytest.raises(InvalidArgumentError, match=r"expected a value in \[0, 6\), got 6"):
        tree.find_prefix_many(np.array([0.0, 6.0]))
    # A rejected call changes nothing.
    assert (tree.get(1), tree.total()) == (0.0, 6.0)


@pytest.mark.parametrize("size", [0, -1, 2.5, True])
def test_batch_size_checked_first(size: object) -> None:
    buffer = ReplayBuffer(8, 3)
    add(buffer, [1.0, 2.0, 3.0], terminals=[False, False, True])
    for draw in (buffer.sample, buffer.sample_prioritized):
        with pytest.raises(InvalidArgumentError, match="batch_size: expected an integer"):
            draw(size)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="length: expected an integer"):
        buffer.sample_sequences(2, size)  # type: ignore[arg-type]


def test_without_replacement_too_large():
    buffer = ReplayBuffer(8, 3)
    add(buffer, [1.0, 2.0, 3.0], terminals=[False, False, True])
    assert len(buffer) == 3
    with pytest.raises(InvalidArgumentError, match="requested 5, buffer holds 3"):
        buffer.sample(5, replace=False)


def test_empty_buffer_raises():
    buffer = ReplayBuffer(8, 3)
    with pytest.raises(InvalidArgumentError, match="empty"):
        buffer.sample(1)
    with pytest.raises(InvalidArgumentError, match="empty"):
        buffer.sample_prioritized(1)
    with pytest.raises(InvalidArgumentError, match="empty"):
        buffer.sample_sequences(1, 2)


def draw_indices(seed):
    buffer = ReplayBuffer(32, 3, seed=seed)
    add(buffer, np.arange(20.0), terminals=np.arange(20) % 7 == 6)
    return [buffer.sample(4).indices.tolist() for _ in range(3)]


def test_seed_reproduces_indices():
    assert draw_indices(7) == draw_indices(7)
    assert draw_indices(8) != draw_indices(7)


# Layout and gathering.


def test_without_replacement_draws_distinct():
    buffer = ReplayBuffer(64, 3, seed=1)
    add(buffer, np.arange(40.0), terminals=np.arange(40) == 39)
    for batch_size in (5, 30, 40):
        indices = buffer.sample(batch_size, replace=False).indices.tolist()
        assert len(set(indices)) == batch_size


def test_batch_fields_match_stored_step():
    buffer = ReplayBuffer(16, 3, 1, 2, extras={"propensities": 1}, seed=3)
    values = np.arange(6.0, dtype=np.float32)
    buffer.extend(
        steps(values),
        values,
        np.stack([values, -values], axis=1),
        steps(values + 0.5),
        terminals=values == 5,
        extras={"propensities": values / 10},
    )
    batch = buffer.sample(32)
    value = batch.observations[:, 0]
    assert torch.equal(batch.actions[:, 0], value)
    assert torch.equal(batch.rewards[:, 1], -value)
    assert torch.allclose(batch.extras["propensities"][:, 0], value / 10)
    expected_next = torch.where(value == 5, value + 0.5, value + 1)
    assert torch.equal(batch.next_observations[:, 0], expected_next)
    assert torch.equal(batch.terminals, value == 5)
    assert batch.observations.dtype == torch.float32
    assert batch.terminals.dtype == torch.bool


def test_outputs_are_reused_without_copy():
    buffer = ReplayBuffer(16, 3, seed=3)
    add(buffer, np.arange(8.0))
    first = buffer.sample(4)
    pointer = first.observations.data_ptr()
    second = buffer.sample(4)
    assert second.observations.data_ptr() == pointer
    assert buffer.sample(5).observations.data_ptr() != pointer


def test_fresh_outputs_when_reuse_disabled():
    buffer = ReplayBuffer(16, 3, seed=3, reuse_outputs=False)
    add(buffer, np.arange(8.0))
    first = buffer.sample(4)
    second = buffer.sample(4)
    assert first.observations.data_ptr() != second.observations.data_ptr()


def test_pin_memory_without_cuda_is_ignored():
    buffer = ReplayBuffer(16, 3, pin_memory=True)
    add(buffer, np.arange(8.0))
    batch = buffer.sample(2)
    assert batch.observations.is_pinned() == torch.cuda.is_available()


def test_prioritized_weights_and_counts():
    buffer = ReplayBuffer(8, 3, alpha=1.0, seed=5)
    add(buffer, [0.0, 1.0, 2.0, 3.0], terminals=[False, False, False, True])
    batch = buffer.sample(4, replace=False)
    slots = batch.indices.numpy().copy()
    priorities = {0: 1.0, 1: 2.0, 2: 4.0, 3: 8.0}
    buffer.update_priorities(slots, [priorities[s] for s in slots], batch.stamps)
    sampled = buffer.sample_prioritized(20000, beta=0.5)
    counts = np.bincount(sampled.indices.numpy(), minlength=4)[:4]
    assert np.allclose(counts / 20000, np.array([1, 2, 4, 8]) / 15, atol=0.02)
    expected = (np.array([priorities[s] for s in sampled.indices.tolist()]) / 1.0) ** -0.5
    assert np.allclose(sampled.weights.numpy(), expected, rtol=1e-6)


def test_new_transition_takes_max_live_priority():
    buffer = ReplayBuffer(8, 3, seed=5)
    add(buffer, [0.0, 1.0, 2.0])
    batch = buffer.sample(2, replace=False)
    buffer.update_priorities(batch.indices, [3.0, 9.0], batch.stamps)
    add(buffer, [3.0])
    assert buffer.priorities()[3] == 9.0


def test_sequences_follow_episodes():
    buffer = ReplayBuffer(64, 3, seed=2)
    values = np.arange(30.0)
    add(buffer, values, terminals=values % 6 == 5)
    batch = buffer.sample_sequences(16, 4)
    assert batch.observations.shape == (16, 4, 3)
    first = batch.observations[:, :1, 0]
    assert torch.equal(batch.observations[:, :, 0], first + torch.arange(4.0))
    assert bool(((first % 6) <= 2).all())


def test_short_episodes_fail_sequence_sampling():
    buffer = ReplayBuffer(64, 3, seed=2)
    add(buffer, np.arange(10.0), terminals=np.ones(10, dtype=bool))
    with pytest.raises(InvalidArgumentError, match="shorter than 3 steps"):
        buffer.sample_sequences(2, 3)


# Input checks.


def test_extend_rejects_wrong_width():
    buffer = ReplayBuffer(8, 3)
    with pytest.raises(ShapeError, match=r"observations: expected shape \(B, 3\)"):
        buffer.extend(np.zeros((2, 4)), [0, 0], [0, 0], np.zeros((2, 3)))


def test_extend_rejects_short_flags():
    buffer = ReplayBuffer(8, 3)
    with pytest.raises(ShapeError, match="terminals"):
        buffer.extend(np.zeros((2, 3)), [0, 0], [0, 0], np.zeros((2, 3)), terminals=[True])


def test_extend_rejects_missing_extra():
    buffer = ReplayBuffer(8, 3, extras={"propensities": 1})
    with pytest.raises(InvalidArgumentError, match="propensities"):
        buffer.extend(np.zeros((2, 3)), [0, 0], [0, 0], np.zeros((2, 3)))


def test_capacity_below_two_rejected():
    with pytest.raises(InvalidArgumentError, match="capacity"):
        ReplayBuffer(1, 3)


def test_update_rejects_bad_priority():
    buffer = ReplayBuffer(8, 3)
    add(buffer, [0.0, 1.0])
    with pytest.raises(InvalidArgumentError, match="priorities"):
        buffer.update_priorities([0], [float("nan")])
    with pytest.raises(InvalidArgumentError, match="priorities"):
        buffer.update_priorities([0], [0.0])
    with pytest.raises(InvalidArgumentError, match="indices"):
        buffer.update_priorities([8], [1.0])
    # Float slots and stamps are rejected rather than truncated to a neighbouring slot.
    with pytest.raises(InvalidArgumentError, match="indices: expected integers"):
        buffer.update_priorities([0.7], [1.0])
    with pytest.raises(InvalidArgumentError, match="stamps: expected integers"):
        buffer.update_priorities([0], [1.0], stamps=np.array([0.5]))
    with pytest.raises(InvalidArgumentError, match="indices: expected integers"):
        buffer.gather(torch.tensor([0.0]))
    with pytest.raises(InvalidArgumentError, match="indices: 9223372036854775808 does not fit"):
        buffer.update_priorities(np.array([2**63], dtype=np.uint64), [1.0])


def test_update_rejects_overflowing_priorities():
    buffer = ReplayBuffer(8, 3, alpha=1.0)
    add(buffer, [0.0, 1.0, 2.0])
    before = buffer.priorities()
    # Two priorities of 1e308 would sum to infinity.
    with pytest.raises(InvalidArgumentError, match="priorities: 1e308 raised to alpha = 1"):
        buffer.update_priorities([0, 1], [1e308, 1e308])
    steep = ReplayBuffer(8, 3, alpha=100.0)
    add(steep, [0.0, 1.0, 2.0])
    with pytest.raises(InvalidArgumentError, match="gives inf, which is above"):
        steep.update_priorities([0], [1e10])
    with pytest.raises(InvalidArgumentError, match="underflows to 0"):
        steep.update_priorities([1], [1e-5])
    np.testing.assert_array_equal(buffer.priorities(), before)


def test_sum_tree_rejects_overflowing_values():
    tree = SumTree(3)
    assert tree.max_value() == np.finfo(np.float64).max / 3
    with pytest.raises(InvalidArgumentError, match="values: 1e308 is above"):
        tree.set_many([0, 1, 2], [1e308, 1e308, 1.0])
    with pytest.raises(InvalidArgumentError, match="expected a finite value >= 0, got -1e-300"):
        tree.set_many([0], [-1e-300])
    with pytest.raises(InvalidArgumentError, match="indices: expected a leaf below 3, got 5"):
        tree.set_many([5], [1.0])
    with pytest.raises(InvalidArgumentError, match="index: expected an integer >= 0, got -1"):
        tree.set(-1, 1.0)
    with pytest.raises(InvalidArgumentError, match="index: expected an integer >= 0, got -1"):
        tree.get(-1)
    with pytest.raises(InvalidArgumentError, match="capacity"):
        SumTree(-1)
    assert tree.total() == 0.0


def test_gather_rejects_boundary_slot():
    buffer = ReplayBuffer(8, 3)
    add(buffer, [0.0], terminals=[True])
    with pytest.raises(InvalidArgumentError, match="slot 1"):
        buffer.gather([1])


def test_negative_beta_rejected():
    buffer = ReplayBuffer(8, 3)
    add(buffer, [0.0, 1.0])
    with pytest.raises(InvalidArgumentError, match="beta"):
        buffer.sample_prioritized(2, beta=-1.0)


# Save and load.


def test_save_load_round_trip(tmp_path):
    buffer = ReplayBuffer(16, 3, 1, 1, extras={"propensities": 1}, seed=11)
    values = np.arange(20.0, dtype=np.float32)
    buffer.extend(
        steps(values),
        values,
        values,
        steps(values + 0.5),
        terminals=values % 5 == 4,
        extras={"propensities": values},
    )
    batch = buffer.sample_prioritized(6)
    buffer.update_priorities(batch.indices, np.arange(1.0, 7.0), batch.stamps)
    path = tmp_path / "replay"
    buffer.save(path)
    buffer.save(path)
    loaded = ReplayBuffer.load(path)

    assert np.array_equal(loaded.priorities(), buffer.priorities())
    assert np.array_equal(loaded.sampleable_mask(), buffer.sampleable_mask())
    assert loaded.position == buffer.position
    assert loaded.extras == {"propensities": 1}
    expected = buffer.sample_prioritized(8, beta=0.3)
    restored = loaded.sample_prioritized(8, beta=0.3)
    assert torch.equal(expected.indices, restored.indices)
    assert torch.equal(expected.observations, restored.observations)
    assert torch.equal(expected.extras["propensities"], restored.extras["propensities"])
    assert torch.equal(expected.weights, restored.weights)
    header = json.loads((path / "header.json").read_text())
    assert header["capacity"] == 16
    assert np.load(path / "observations.npy").shape == (16, 3)
    assert not list(tmp_path.glob(".replay.*"))


def test_load_rejects_corrupt_array(tmp_path):
    buffer = ReplayBuffer(8, 3)
    add(buffer, [0.0, 1.0])
    buffer.save(tmp_path / "replay")
    np.save(tmp_path / "replay" / "actions.npy", np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="actions.npy"):
        ReplayBuffer.load(tmp_path / "replay")


def test_load_missing_directory(tmp_path):
    with pytest.raises(OSError, match="header.json"):
        ReplayBuffer.load(tmp_path / "absent")


# Threads.


def test_concurrent_use_never_tears_transitions():
    buffer = ReplayBuffer(256, 64, seed=4, alpha=0.7)
    add(buffer, np.arange(32.0), width=64)
    errors = []
    stop = threading.Event()

    def writer():
        start = 32.0
        while not stop.is_set():
            values = np.arange(start, start + 16)
            add(buffer, values, terminals=values % 50 == 49, width=64)
            start += 16

    def reader(prioritized):
        for _ in range(200):
            batch = buffer.sample_prioritized(32) if prioritized else buffer.sample(32)
            value = batch.observations[:, :1]
            next_value = torch.where(batch.terminals[:, None], value + 0.5, value + 1)
            if not (
                torch.equal(batch.observations, value.expand(-1, 64))
                and torch.equal(batch.actions, value)
                and torch.equal(batch.next_observations, next_value.expand(-1, 64))
            ):
                errors.append("torn batch")
            if prioritized:
                buffer.update_priorities(batch.indices, np.full(32, 2.0), batch.stamps)

    threads = [threading.Thread(target=writer)]
    threads += [threading.Thread(target=reader, args=(flag,)) for flag in (False, True, True)]
    for thread in threads:
        thread.start()
    for thread in threads[1:]:
        thread.join()
    stop.set()
    threads[0].join()
    assert errors == []


# Hypothesis checks against the reference model.


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.just(0.0), st.floats(1e-3, 1e6, allow_nan=False)), min_size=1, max_size=40
    ),
    fractions=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=20),
)
def test_sum_tree_matches_reference(values, fractions):
    tree = SumTree(len(values))
    for slot, value in enumerate(values):
        tree.set(slot, value)
    batched = SumTree(len(values))
    batched.set_many(np.arange(len(values)), np.array(values))
    assert batched.total() == tree.total()
    total = sum(values)
    assert tree.total() == pytest.approx(total, rel=1e-12, abs=0)
    assert tree.max() == max(values)
    positive = [value for value in values if value > 0]
    assert tree.min_positive() == (min(positive) if positive else float("inf"))
    if total == 0:
        with pytest.raises(InvalidArgumentError):
            tree.find_prefix(0.0)
        return
    for fraction in fractions:
        mass = fraction * total
        # Keep masses clear of cumulative boundaries, where the two summation orders round
        # differently.
        edges = np.cumsum(values)
        if np.min(np.abs(edges - mass)) < 1e-9 * total:
            continue
        assert tree.find_prefix(mass) == reference.find_prefix(values, mass)
        assert batched.find_prefix_many(np.array([mass]))[0] == reference.find_prefix(values, mass)


episodes_strategy = st.lists(
    st.tuples(st.integers(1, 6), st.sampled_from(["terminal", "truncated", "open"])),
    min_size=1,
    max_size=8,
)


def feed(buffer, model, episodes, chunk):
    rows = []
    for length, end in episodes:
        for step in range(length):
            last = step == length - 1
            rows.append((last and end == "terminal", last and end == "truncated"))
    count = len(rows)
    observations = steps(np.arange(count, dtype=np.float32))
    next_observations = steps(np.arange(count, dtype=np.float32) + 1000)
    terminals = np.array([row[0] for row in rows])
    truncations = np.array([row[1] for row in rows])
    for start in range(0, count, chunk):
        part = slice(start, start + chunk)
        buffer.extend(
            observations[part],
            np.zeros(len(observations[part])),
            np.zeros(len(observations[part])),
            next_observations[part],
            terminals=terminals[part],
            truncations=truncations[part],
        )
        model.extend(
            observations[part], next_observations[part], terminals[part], truncations[part]
        )


@settings(max_examples=80, deadline=None)
@given(episodes=episodes_strategy, capacity=st.integers(2, 20), chunk=st.integers(1, 7))
def test_next_observations_match_reference(episodes, capacity, chunk):
    buffer = ReplayBuffer(capacity, 3)
    model = reference.ReferenceReplay(capacity)
    feed(buffer, model, episodes, chunk)
    expected = model.sampleable()
    mask = buffer.sampleable_mask()
    assert sorted(np.flatnonzero(mask).tolist()) == sorted(expected)
    assert len(buffer) == len(expected)
    if not expected:
        return
    slots = np.array(sorted(expected), dtype=np.int64)
    batch = buffer.gather(slots)
    for row, slot in enumerate(slots):
        observation, next_observation = expected[int(slot)]
        assert np.array_equal(batch.observations[row].numpy(), observation)
        assert np.array_equal(batch.next_observations[row].numpy(), next_observation)


@settings(max_examples=40, deadline=None)
@given(
    episodes=episodes_strategy,
    capacity=st.integers(2, 20),
    length=st.integers(1, 4),
    seed=st.integers(0, 2**32),
)
def test_sequence_windows_match_reference(episodes, capacity, length, seed):
    buffer = ReplayBuffer(capacity, 3, seed=seed)
    model = reference.ReferenceReplay(capacity)
    feed(buffer, model, episodes, 3)
    windows = model.windows(length)
    if not windows:
        return
    batch = buffer.sample_sequences(8, length)
    for window in batch.indices.tolist():
        assert tuple(window) in windows


@settings(max_examples=15, deadline=None)
@given(
    priorities=st.lists(st.floats(0.1, 10.0), min_size=2, max_size=8),
    alpha=st.floats(0.0, 1.5),
    beta=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32),
)
def test_prioritized_distribution_matches_reference(priorities, alpha, beta, seed):
    count = len(priorities)
    buffer = ReplayBuffer(count + 1, 3, alpha=alpha, seed=seed)
    add(buffer, np.arange(float(count)), terminals=np.arange(count) == count - 1)
    batch = buffer.sample(count, replace=False)
    slots = batch.indices.numpy().copy()
    assert buffer.update_priorities(slots, np.array(priorities)[slots], batch.stamps) == 0

    draws = 20000
    sampled = buffer.sample_prioritized(draws, beta=beta)
    stored = buffer.priorities()
    probabilities = reference.prioritized_probabilities(stored, alpha)
    frequencies = np.bincount(sampled.indices.numpy(), minlength=count + 1) / draws
    tolerance = 5 * np.sqrt(probabilities * (1 - probabilities) / draws) + 1e-9
    assert np.all(np.abs(frequencies - probabilities) <= tolerance)
    expected = reference.importance_weights(probabilities, sampled.indices.numpy(), beta)
    assert np.allclose(sampled.weights.numpy(), expected, rtol=1e-5)


@settings(max_examples=15, deadline=None)
@given(capacity=st.integers(4, 12), seed=st.integers(0, 2**32))
def test_uniform_distribution_is_flat(capacity, seed):
    buffer = ReplayBuffer(capacity, 3, seed=seed)
    add(buffer, np.arange(float(capacity + 3)), terminals=np.arange(capacity + 3) % 4 == 3)
    mask = buffer.sampleable_mask()
    draws = 20000
    counts = np.bincount(buffer.sample(draws).indices.numpy(), minlength=capacity)
    assert np.all(counts[~mask] == 0)
    probability = 1 / mask.sum()
    tolerance = 5 * np.sqrt(probability * (1 - probability) / draws)
    assert np.all(np.abs(counts[mask] / draws - probability) <= tolerance)
