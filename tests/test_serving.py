"""Serving: export of torch policies and scoring with recrl.Scorer against torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import recrl
from recrl.errors import InvalidArgumentError, RecrlIOError, ShapeError
from recrl.nets import MLP, CategoricalActor, StateEncoder
from recrl.serving import (
    Fusion,
    Normalisation,
    Scorer,
    export_categorical_actor,
    export_fusion,
    export_mlp,
    fuse_scores,
    read_policy_metadata,
    select_top_k,
)

from .reference import scoring as reference

NUMERIC = 6
CARDINALITIES = [5, 3, 7]
ITEMS = 50  # dense indices 0..49, 0 = unknown
HISTORY = 8


def make_actor(seed: int = 0, include_history: bool = True) -> CategoricalActor:
    torch.manual_seed(seed)
    encoder = StateEncoder(NUMERIC, CARDINALITIES, ITEMS, 4, include_history=include_history)
    return CategoricalActor(encoder, [32, 16], ITEMS, action_dim=8).eval()


def item_vocabulary() -> np.ndarray:
    # Raw ids of dense indices 1..ITEMS-1: large, sparse int64 values.
    return (np.arange(1, ITEMS, dtype=np.int64) * 7_919 + 10**12).astype(np.int64)


@pytest.fixture
def actor_file(tmp_path: Path) -> tuple[CategoricalActor, Path, Normalisation]:
    actor = make_actor()
    stats = Normalisation(mean=np.linspace(-1, 1, NUMERIC), std=np.linspace(0.5, 2, NUMERIC))
    path = export_categorical_actor(
        actor,
        tmp_path / "actor.safetensors",
        item_vocabulary=item_vocabulary(),
        normalisation=stats,
    )
    return actor, path, stats


def random_categorical_requests(rng: np.random.Generator, count: int, candidates: int):
    vocabulary = item_vocabulary()
    numeric = rng.normal(size=(count, NUMERIC)).astype(np.float32) * 3
    codes = np.stack([rng.integers(-1, c + 2, size=count) for c in CARDINALITIES], 1)
    history_index = rng.integers(0, ITEMS + 5, size=(count, HISTORY))  # past ITEMS: unknown
    ids = rng.integers(0, ITEMS + 5, size=(count, candidates))
    raw = lambda idx: np.where(  # noqa: E731
        (idx >= 1) & (idx < ITEMS), vocabulary[np.clip(idx - 1, 0, ITEMS - 2)], -(10**15) - idx
    )
    return numeric, codes.astype(np.int64), history_index, raw(history_index), ids, raw(ids)


def torch_categorical_scores(actor, stats, numeric, codes, history_index, ids) -> np.ndarray:
    mean = np.asarray(stats.mean, np.float32)
    std = np.asarray(stats.std, np.float32)
    normalised = (numeric - mean) / std
    history = np.where(history_index < ITEMS, history_index, 0)
    candidates = np.where(ids < ITEMS, ids, 0)
    with torch.no_grad():
        preferences = actor.preferences(
            torch.from_numpy(normalised), torch.from_numpy(codes), torch.from_numpy(history)
        )
        return actor.scores(preferences, torch.from_numpy(candidates)).numpy()


def assert_close_relative(actual: np.ndarray, expected: np.ndarray, rtol: float) -> None:
    # Relative to each value, with a floor at rtol times the typical magnitude so that values
    # that cancel to near zero do not demand more than float32 can give.
    scale = float(np.abs(expected).mean()) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def test_categorical_matches_torch_on_1000_requests(actor_file) -> None:
    actor, path, stats = actor_file
    scorer = Scorer.load(path)
    rng = np.random.default_rng(1)
    numeric, codes, history_index, history_raw, ids, ids_raw = random_categorical_requests(
        rng, 1000, 30
    )
    expected = torch_categorical_scores(actor, stats, numeric, codes, history_index, ids)
    for r in range(1000):
        scores = scorer.score(numeric[r], ids_raw[r], categorical=codes[r], history=history_raw[r])
        assert_close_relative(scores, expected[r], 1e-5)
    assert scorer.unknown_candidates == int((ids == 0).sum() + (ids >= ITEMS).sum())
    assert scorer.unknown_history == int(
        (history_index == 0).sum() + (history_index >= ITEMS).sum()
    )


def test_categorical_batch_equals_one_by_one(actor_file) -> None:
    _, path, _ = actor_file
    scorer = Scorer.load(path)
    rng = np.random.default_rng(2)
    numeric, codes, _, history_raw, _, ids_raw = random_categorical_requests(rng, 64, 40)
    batch = scorer.score_batch(numeric, ids_raw, categorical=codes, history=history_raw)
    assert batch.shape == (64, 40)
    for r in range(64):
        single = scorer.score(numeric[r], ids_raw[r], categorical=codes[r], history=history_raw[r])
        np.testing.assert_allclose(batch[r], single, rtol=1e-6, atol=1e-6)


def test_categorical_without_history(tmp_path: Path) -> None:
    actor = make_actor(include_history=False)
    path = export_categorical_actor(
        actor, tmp_path / "p.safetensors", item_vocabulary=item_vocabulary()
    )
    scorer = Scorer.load(path)
    assert not scorer.uses_history
    numeric = np.ones(NUMERIC, np.float32)
    codes = np.array([1, 2, 3], np.int64)
    ids = item_vocabulary()[:5]
    with torch.no_grad():
        preference = actor.preferences(
            torch.from_numpy(numeric[None]),
            torch.from_numpy(codes[None]),
            torch.zeros(1, 0, dtype=torch.int64),
        )
        expected = actor.scores(preference, torch.arange(1, 6)).numpy()[0]
    assert_close_relative(scorer.score(numeric, ids, categorical=codes), expected, 1e-5)
    with pytest.raises(InvalidArgumentError, match="history"):
        scorer.score(numeric, ids, categorical=codes, history=np.array([1], np.int64))


def make_mlp_file(tmp_path: Path, outputs: int = 1, fusion: Fusion | None = None):
    torch.manual_seed(3)
    mlp = MLP(20, [32, 16], outputs, activation="elu").eval()
    stats = Normalisation(mean=np.linspace(0, 5, 20), std=np.linspace(1, 3, 20))
    path = export_mlp(
        mlp, tmp_path / "mlp.safetensors", state_dim=12, normalisation=stats, fusion=fusion
    )
    return mlp, path, stats


def torch_mlp(mlp, stats, states, candidates) -> np.ndarray:
    rows = np.concatenate([np.repeat(states[:, None], candidates.shape[1], 1), candidates], 2)
    normalised = (rows - np.asarray(stats.mean, np.float32)) / np.asarray(stats.std, np.float32)
    with torch.no_grad():
        return mlp(torch.from_numpy(normalised.reshape(-1, 20))).numpy()


def test_mlp_matches_torch_on_1000_requests(tmp_path: Path) -> None:
    mlp, path, stats = make_mlp_file(tmp_path)
    scorer = Scorer.load(path)
    rng = np.random.default_rng(4)
    states = rng.normal(2, 2, size=(1000, 12)).astype(np.float32)
    candidates = rng.normal(2, 2, size=(1000, 5, 8)).astype(np.float32)
    expected = torch_mlp(mlp, stats, states, candidates).reshape(1000, 5)
    for r in range(1000):
        assert_close_relative(scorer.score(states[r], candidates[r]), expected[r], 1e-5)
    batch = scorer.score_batch(states, candidates)
    for r in range(1000):
        np.testing.assert_allclose(
            batch[r], scorer.score(states[r], candidates[r]), rtol=1e-6, atol=1e-6
        )


@pytest.mark.parametrize("rows", [127, 128, 333, 512])
def test_mlp_forward_split_over_threads_matches_one_thread(tmp_path: Path, rows: int) -> None:
    torch.manual_seed(8)
    mlp = MLP(50, [32, 16], 2).eval()
    scorer = Scorer.load(export_mlp(mlp, tmp_path / "m.safetensors", fusion=Fusion([1.0, 1.0])))
    inputs = np.random.default_rng(9).normal(size=(rows, 50)).astype(np.float32)
    with torch.no_grad():
        expected = mlp(torch.from_numpy(inputs)).numpy()
    split = scorer.forward(inputs, threads=2)
    assert split.shape == (rows, 2)
    assert_close_relative(split, expected, 1e-5)
    np.testing.assert_allclose(split, scorer.forward(inputs), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh", "leaky_relu", "elu"])
def test_mlp_forward_matches_torch(tmp_path: Path, activation: str) -> None:
    torch.manual_seed(5)
    mlp = MLP(40, [24], 3, activation=activation, dropout=0.2).eval()
    path = export_mlp(mlp, tmp_path / "m.safetensors", fusion=Fusion([1.0, -0.5, 2.0]))
    scorer = Scorer.load(path)
    inputs = np.random.default_rng(6).normal(size=(7, 40)).astype(np.float32)
    with torch.no_grad():
        expected = mlp(torch.from_numpy(inputs)).numpy()
    assert_close_relative(scorer.forward(inputs), expected, 1e-5)
    assert_close_relative(scorer.forward(inputs[0]), expected[0], 1e-5)
    fused = scorer.score(None, inputs)
    assert_close_relative(fused, expected @ np.array([1.0, -0.5, 2.0], np.float32), 1e-5)


def test_mlp_fusion_metadata(tmp_path: Path) -> None:
    _, path, _ = make_mlp_file(
        tmp_path, outputs=2, fusion=Fusion([0.3, 0.7], "sum", ["click", "like"])
    )
    metadata = read_policy_metadata(path)
    assert metadata["kind"] == "mlp"
    assert metadata["recrl_version"] == recrl.__version__
    assert metadata["fusion"] == {"mode": "sum", "weights": [0.3, 0.7], "names": ["click", "like"]}
    assert metadata["state"]["dim"] == 12
    assert len(metadata["state"]["normalisation"]["mean"]) == 20
    assert metadata["mlp"]["widths"] == [20, 32, 16, 2]
    assert json.loads(Scorer.load(path).metadata) == metadata


def test_categorical_metadata(actor_file) -> None:
    _, path, _ = actor_file
    metadata = read_policy_metadata(path)
    assert metadata["kind"] == "categorical"
    assert metadata["candidates"] == {
        "kind": "item_ids",
        "vocabulary_size": ITEMS,
        "unknown_index": 0,
    }
    assert [f["cardinality"] for f in metadata["encoder"]["fields"]] == CARDINALITIES
    assert all(f["unknown_index"] == 0 for f in metadata["encoder"]["fields"])
    assert metadata["state"]["features"] == [f"feature_{i}" for i in range(NUMERIC)]
    assert not list(path.parent.glob(".*"))  # no temporary file left behind


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.lists(st.floats(0, 10, width=32) | st.just(float("nan")), min_size=3, max_size=3),
        max_size=40,
    ),
    weights=st.lists(st.floats(-2, 2, width=32), min_size=3, max_size=3),
    k=st.integers(0, 50),
    mode=st.sampled_from(["sum", "product"]),
)
def test_fusion_and_top_k_match_reference(data, weights, k, mode) -> None:
    predictions = np.asarray(data, dtype=np.float32).reshape(-1, 3)
    weights = np.asarray(weights, dtype=np.float32)
    # Scores are float32, so a fused value beyond its range is infinite there (a subnormal
    # prediction raised to a negative weight). Compare against the reference rounded the same way.
    with np.errstate(over="ignore"):
        expected = reference.fuse(predictions, weights, mode).astype(np.float32)
    scores = fuse_scores(predictions, weights, mode=mode, invalid="rank_last")
    has_nan = np.isnan(predictions).any(axis=1)
    assert np.isnan(scores[has_nan]).all()
    np.testing.assert_allclose(scores[~has_nan], expected[~has_nan], rtol=2e-5, atol=1e-30)
    indices, best = select_top_k(scores, k)
    assert indices.tolist() == reference.top_k(scores, k)
    np.testing.assert_array_equal(best, scores[indices])


def test_fusion_policy_top_k_contract(tmp_path: Path) -> None:
    path = export_fusion(tmp_path / "f.safetensors", Fusion([1.0, 2.0], "sum"))
    scorer = Scorer.load(path)
    predictions = np.array([[1, 0], [0, 1], [2, 0], [1, 0.5], [0, 0]], np.float32)
    indices, scores = scorer.top_k(None, predictions, 3)
    assert indices.tolist() == [1, 2, 3]  # scores 1, 2, 2, 2, 0: ties by lower index
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(scores, np.array([2, 2, 2], np.float32))
    indices, _ = scorer.top_k(None, predictions, 100)
    assert indices.tolist() == [1, 2, 3, 0, 4]
    empty_indices, empty_scores = scorer.top_k(None, np.zeros((0, 2), np.float32), 5)
    assert empty_indices.shape == (0,)
    assert empty_scores.shape == (0,)
    with pytest.raises(ValueError, match="k: expected a non-negative number of candidates"):
        scorer.top_k(None, predictions, -1)


def test_product_fusion_contract(tmp_path: Path) -> None:
    path = export_fusion(tmp_path / "f.safetensors", Fusion([2.0, 0.5, 0.0], "product"))
    scorer = Scorer.load(path)
    predictions = np.array([[0.5, 4.0, 0.0], [0.0, 1.0, 3.0]], np.float32)
    np.testing.assert_allclose(scorer.score(None, predictions), [0.5, 0.0], rtol=1e-6)
    with pytest.raises(InvalidArgumentError, match="candidate 1"):
        scorer.score(None, np.array([[1, 1, 1], [-0.5, 1, 1]], np.float32))


def test_k_larger_than_candidates_and_empty(actor_file) -> None:
    _, path, _ = actor_file
    scorer = Scorer.load(path)
    numeric = np.zeros(NUMERIC, np.float32)
    codes = np.zeros(3, np.int64)
    history = item_vocabulary()[:3]
    ids = item_vocabulary()[:4]
    indices, scores = scorer.top_k(numeric, ids, 10, categorical=codes, history=history)
    assert sorted(indices.tolist()) == [0, 1, 2, 3]
    assert np.all(np.diff(scores) <= 0)
    indices, scores = scorer.top_k(
        numeric, np.array([], np.int64), 10, categorical=codes, history=history
    )
    assert indices.shape == (0,)
    assert scores.shape == (0,)
    assert scorer.score(numeric, np.array([]), categorical=codes, history=history).shape == (0,)


def test_unknown_ids_score_as_index_zero(actor_file) -> None:
    actor, path, _ = actor_file
    scorer = Scorer.load(path)
    numeric = np.zeros(NUMERIC, np.float32)
    codes = np.zeros(3, np.int64)
    scores = scorer.score(
        numeric,
        np.array([-5, 2**62, item_vocabulary()[0]], np.int64),
        categorical=codes,
        history=np.array([], np.int64),
    )
    assert scores[0] == scores[1]
    assert scorer.unknown_candidates == 2


# Rejection paths, one test each.


def test_state_wrong_length_rejected(actor_file) -> None:
    scorer = Scorer.load(actor_file[1])
    with pytest.raises(ShapeError, match=r"state: expected shape \(6,\), got shape \(5,\)"):
        scorer.score(
            np.zeros(5, np.float32), np.zeros(2, np.int64), categorical=np.zeros(3, np.int64)
        )


def test_state_wrong_dtype_rejected(actor_file) -> None:
    scorer = Scorer.load(actor_file[1])
    with pytest.raises(
        TypeError, match=r"state: expected a float32 NumPy array of shape \(6,\), got a float64"
    ):
        scorer.score(np.zeros(6), np.zeros(2, np.int64), categorical=np.zeros(3, np.int64))


def test_candidates_wrong_dtype_rejected(actor_file) -> None:
    scorer = Scorer.load(actor_file[1])
    with pytest.raises(
        TypeError, match=r"candidates: expected a int64 NumPy array of shape \(C,\)"
    ):
        scorer.score(
            np.zeros(6, np.float32), np.zeros(2, np.float32), categorical=np.zeros(3, np.int64)
        )


def test_categorical_missing_rejected(actor_file) -> None:
    scorer = Scorer.load(actor_file[1])
    with pytest.raises(InvalidArgumentError, match="categorical: required"):
        scorer.score(np.zeros(6, np.float32), np.zeros(2, np.int64))


def test_categorical_wrong_count_rejected(actor_file) -> None:
    scorer = Scorer.load(actor_file[1])
    with pytest.raises(ShapeError, match="categorical"):
        scorer.score(
            np.zeros(6, np.float32), np.zeros(2, np.int64), categorical=np.zeros(2, np.int64)
        )


def test_nan_state_rejected(actor_file) -> None:
    scorer = Scorer.load(actor_file[1])
    state = np.zeros(6, np.float32)
    state[4] = np.inf
    with pytest.raises(InvalidArgumentError, match="state: the value at position 4 is inf"):
        scorer.score(state, np.zeros(2, np.int64), categorical=np.zeros(3, np.int64))


def test_nan_candidate_rejected_or_ranked_last(tmp_path: Path) -> None:
    _, path, _ = make_mlp_file(tmp_path)
    scorer = Scorer.load(path)
    state = np.zeros(12, np.float32)
    candidates = np.ones((5, 8), np.float32)
    candidates[3, 2] = np.nan
    with pytest.raises(
        InvalidArgumentError, match="candidate 3 has the non-finite value NaN at position 2"
    ):
        scorer.score(state, candidates)
    indices, scores = scorer.top_k(state, candidates, 5, invalid="rank_last")
    assert indices.tolist() == [0, 1, 2, 4, 3]
    assert np.isnan(scores[-1])
    batch = np.stack([np.ones((5, 8), np.float32), candidates])
    with pytest.raises(InvalidArgumentError, match="request 1: candidate 3"):
        scorer.score_batch(np.zeros((2, 12), np.float32), batch)


def test_batch_rows_mismatch_rejected(tmp_path: Path) -> None:
    _, path, _ = make_mlp_file(tmp_path)
    scorer = Scorer.load(path)
    with pytest.raises(ShapeError, match="states: expected 3 rows"):
        scorer.score_batch(np.zeros((2, 12), np.float32), np.zeros((3, 4, 8), np.float32))


def test_candidate_width_rejected(tmp_path: Path) -> None:
    _, path, _ = make_mlp_file(tmp_path)
    scorer = Scorer.load(path)
    with pytest.raises(
        ShapeError, match=r"candidates: expected shape \(C, 8\), got shape \(4, 7\)"
    ):
        scorer.score(np.zeros(12, np.float32), np.zeros((4, 7), np.float32))


def test_invalid_option_rejected(tmp_path: Path) -> None:
    _, path, _ = make_mlp_file(tmp_path)
    with pytest.raises(InvalidArgumentError, match="invalid: expected"):
        Scorer.load(path).score(
            np.zeros(12, np.float32), np.zeros((1, 8), np.float32), invalid="skip"
        )


def test_missing_file_rejected(tmp_path: Path) -> None:
    with pytest.raises(RecrlIOError, match="missing.safetensors"):
        Scorer.load(tmp_path / "missing.safetensors")


def test_pickle_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(make_actor().state_dict(), path)
    with pytest.raises(InvalidArgumentError, match="not a valid safetensors file"):
        Scorer.load(path)


def test_foreign_safetensors_rejected(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": np.zeros(2, np.float32)}, str(path))
    with pytest.raises(InvalidArgumentError, match='no "recrl" entry'):
        Scorer.load(path)


def test_export_rejects_bad_vocabulary(tmp_path: Path) -> None:
    with pytest.raises(ShapeError, match="item_vocabulary"):
        export_categorical_actor(
            make_actor(), tmp_path / "x.safetensors", item_vocabulary=np.arange(ITEMS)
        )


def test_cli_export_and_score(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    actor = make_actor()
    run = tmp_path / "run"
    run.mkdir()
    save_file(actor.state_dict(), str(run / "actor.safetensors"))
    np.save(tmp_path / "item_vocabulary.npy", item_vocabulary())
    (run / "actor.json").write_text(
        json.dumps(
            {
                "class": "CategoricalActor",
                "config": {
                    "encoder": {
                        "numeric_dim": NUMERIC,
                        "cardinalities": CARDINALITIES,
                        "item_vocabulary": ITEMS,
                        "embedding_dim": 4,
                    },
                    "hidden_dims": [32, 16],
                    "item_vocabulary": ITEMS,
                    "action_dim": 8,
                },
            }
        )
    )
    policy = tmp_path / "policy.safetensors"
    command = [sys.executable, "-m", "recrl.cli"]
    subprocess.run(
        [
            *command,
            "export",
            str(run),
            "--out",
            str(policy),
            "--item-vocabulary",
            str(tmp_path / "item_vocabulary.npy"),
        ],
        check=True,
        capture_output=True,
    )
    requests = tmp_path / "requests.jsonl"
    ids = item_vocabulary()[:6].tolist()
    lines = [
        {
            "id": "a",
            "state": [0.5] * NUMERIC,
            "candidates": ids,
            "categorical": [1, 0, 2],
            "history": ids[:2],
        },
        {
            "id": "b",
            "state": [-1.0] * NUMERIC,
            "candidates": [],
            "categorical": [0, 0, 0],
            "history": [],
        },
    ]
    requests.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "top.jsonl"
    subprocess.run(
        [
            *command,
            "score",
            "--policy",
            str(policy),
            "--requests",
            str(requests),
            "--out",
            str(out),
            "--k",
            "3",
            "--no-progress",
        ],
        check=True,
        capture_output=True,
    )
    results = [json.loads(line) for line in out.read_text().splitlines()]
    scorer = Scorer.load(policy)
    indices, scores = scorer.top_k(
        np.full(NUMERIC, 0.5, np.float32),
        np.asarray(ids),
        3,
        categorical=np.array([1, 0, 2]),
        history=np.asarray(ids[:2]),
    )
    assert results[0]["id"] == "a"
    assert results[0]["indices"] == indices.tolist()
    assert results[0]["items"] == [ids[i] for i in indices]
    np.testing.assert_allclose(results[0]["scores"], scores, rtol=1e-6)
    assert results[1] == {"id": "b", "indices": [], "scores": [], "items": []}


def test_cli_score_reports_bad_line(tmp_path: Path) -> None:
    path = export_fusion(tmp_path / "f.safetensors", Fusion([1.0]))
    requests = tmp_path / "r.jsonl"
    requests.write_text('{"candidates": [[1.0]]}\n{"candidates": [[1.0, 2.0]]}\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "recrl.cli",
            "score",
            "--policy",
            str(path),
            "--requests",
            str(requests),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "line 2" in result.stderr
    assert not (tmp_path / "o.jsonl").exists()


@pytest.fixture(scope="module")
def numeric_actor_file(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(7)
    encoder = StateEncoder(NUMERIC, [], ITEMS, 4, include_history=False)
    actor = CategoricalActor(encoder, [16], ITEMS, action_dim=8).eval()
    path = tmp_path_factory.mktemp("numeric") / "actor.safetensors"
    export_categorical_actor(actor, path, item_vocabulary=item_vocabulary())
    return actor, Scorer.load(path)


@settings(max_examples=60, deadline=None)
@given(
    candidates=st.lists(
        st.sampled_from(item_vocabulary().tolist()) | st.integers(-(2**63), 2**63 - 1),
        max_size=30,
    ),
    state=st.lists(st.floats(-5, 5, width=32), min_size=NUMERIC, max_size=NUMERIC),
)
def test_categorical_scores_match_reference(numeric_actor_file, candidates, state) -> None:
    actor, scorer = numeric_actor_file
    numeric = np.asarray(state, dtype=np.float32)
    ids = np.asarray(candidates, dtype=np.int64)
    with torch.no_grad():
        preference = actor.preference(torch.from_numpy(numeric[None]))[0].numpy()
    embeddings = actor.item_embeddings.weight.detach().numpy().astype(np.float64)
    expected, unknown = reference.categorical_scores(preference, embeddings, item_vocabulary(), ids)
    before = scorer.unknown_candidates
    scores = scorer.score(numeric, ids)
    assert scores.shape == (len(ids),)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert scorer.unknown_candidates - before == unknown


@pytest.mark.parametrize(
    ("field", "values", "message"),
    [
        ("candidates", [1.5, 2.7], r"candidates\[0\]: expected an integer id, got 1.5"),
        ("candidates", [1, "x"], r"candidates\[1\]: expected an integer id, got 'x'"),
        ("history", [True], r"history\[0\]: expected an integer id, got True"),
    ],
)
def test_score_file_refuses_ids_that_are_not_integers(
    actor_file, tmp_path: Path, field: str, values: list, message: str
) -> None:
    from recrl.errors import DataFormatError
    from recrl.serving.offline import score_file

    _, path, _ = actor_file
    ids = item_vocabulary()[:3].tolist()
    request = {"state": [0.5] * NUMERIC, "candidates": ids, "categorical": [1, 0, 2]}
    request[field] = values
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps(request) + "\n")
    with pytest.raises(DataFormatError, match=r"line 1: " + message):
        score_file(path, requests, tmp_path / "out.jsonl", progress=False)
    with pytest.raises(RecrlIOError, match="requests file not found"):
        score_file(path, tmp_path / "missing.jsonl", tmp_path / "out.jsonl", progress=False)
