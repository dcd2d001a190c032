"""Short RMTL and TSCAC training runs whose losses and parameters the distributed tests compare.

Imported by ``tests/test_distributed.py`` for the single-process reference, and run under
``torch.distributed.run`` as ``python distributed_worker.py MODES DATASET OUT_FOLDER``. MODES
is a comma-separated list of ``rmtl`` and TSCAC method names (such as ``tscac``). For each
mode, each rank writes ``<mode>_rank<r>.json`` (the losses) and ``<mode>_rank<r>.npz`` (the
parameters) into OUT_FOLDER.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recrl import distributed
from recrl.data import load_prepared
from recrl.errors import InvalidArgumentError
from recrl.nets import build_backbone
from recrl.rmtl import RMTLConfig, TaskData, finetune, pretrain, train_critics
from recrl.tscac.agents import build_method
from recrl.tscac.config import CONFIG_CLASSES
from recrl.tscac.data import Transitions
from recrl.tscac.evaluate import Evaluator
from recrl.tscac.runner import RunConfig, _Trainer

# Global batch sizes divide by 2 ranks. The training split of the 3,005-row test log has 1,803
# rows, so each epoch ends with a short batch. At batch size 256 its 11 rows split 5 and 6. At
# batch size 34 it has 1 row, which leaves rank 0 an empty part. Dropout is off because each
# rank draws its own dropout masks.
RMTL_CONFIG = {
    "backbone": {"embedding_dim": 4, "bottom_dims": [16, 8], "tower_dims": [8], "dropout": 0.0},
    "pretrain": {"epochs": 2, "batch_size": 256, "patience": 5},
    "critic": {"epochs": 1, "batch_size": 256, "embedding_dim": 4, "bottom_dims": [8]},
    "finetune": {"epochs": 1, "batch_size": 34, "patience": 5},
}
TSCAC_CONFIG = {
    "candidates": 20,
    "hidden_dims": (8,),
    "embedding_dim": 4,
    "action_dim": 4,
    "batch_size": 32,
}
TSCAC_STEPS = 6


class _StepLosses(logging.Handler):
    """Collect the per-step losses that RMTL training logs at debug level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.losses: dict[str, list[float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "%s step %d: loss %.9g" and isinstance(record.args, tuple):
            stage, _, loss = record.args
            self.losses.setdefault(str(stage), []).append(float(loss))  # type: ignore[arg-type]


def _parameters(module: torch.nn.Module, prefix: str) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.{name}": value.detach().cpu().numpy().copy()
        for name, value in module.state_dict().items()
    }


def run_rmtl(dataset_path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Pretrain an ESMM, train its critic and fine-tune it; return losses and parameters."""
    config = RMTLConfig.from_dict(RMTL_CONFIG).with_backbone("esmm")
    data = TaskData.load(load_prepared(dataset_path))
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = build_backbone(data.spec, config.backbone)

    handler = _StepLosses()
    training_logger = logging.getLogger("recrl.rmtl.training")
    training_logger.addHandler(handler)
    level = training_logger.level
    training_logger.setLevel(logging.DEBUG)
    try:
        histories = {"pretrain": pretrain(model, data, config.pretrain, generator)}
        critics, histories["critic"] = train_critics(model, data, config.critic, generator)
        histories["finetune"] = finetune(model, critics, data, config.finetune, generator)
    finally:
        training_logger.removeHandler(handler)
        training_logger.setLevel(level)

    parameters = _parameters(model, "model")
    parameters.update(_parameters(critics.critics, "critics"))
    parameters.update(_parameters(critics.target_critics, "target_critics"))
    summary = {
        "steps": handler.losses,
        "epochs": {
            stage: [{k: v for k, v in record.items() if not k.startswith("time/")} for record in h]
            for stage, h in histories.items()
        },
    }
    return summary, parameters


def run_method(dataset_path: str, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Take steps of method ``name``'s first stage; return the diagnostics and parameters."""
    dataset = load_prepared(dataset_path)
    config = CONFIG_CLASSES[name](**TSCAC_CONFIG)  # type: ignore[arg-type]
    spec = Transitions.build_spec(dataset, config.candidates)
    transitions = Transitions(dataset, spec)
    trainer = _Trainer(
        transitions, Evaluator(transitions, None), RunConfig(), seed=0, device=torch.device("cpu")
    )
    torch.manual_seed(0)
    method = build_method(name, spec, config)
    method.set_stage(method.stages[0])
    method.train()
    steps = [trainer.update(method, config.batch_size) for _ in range(TSCAC_STEPS)]
    return {"steps": steps}, _parameters(method, name)


def _collective_checks() -> dict[str, Any]:
    """Return this rank's part of a 7-row batch and the batch-size error of this world size."""
    summary: dict[str, Any] = {"part": distributed.split_batch(np.arange(7)).rows.tolist()}
    try:
        distributed.check_batch_size("batch_size", 2 * distributed.world_size() + 1)
    except InvalidArgumentError as error:
        summary["batch_size_error"] = str(error)
    return summary


def main() -> None:
    """Run each comma-separated mode on this rank and write its losses and parameters."""
    modes, dataset_path, out = sys.argv[1:]
    torch.set_num_threads(1)
    distributed.setup("cpu")
    folder = Path(out)
    rank = distributed.rank()
    try:
        for mode in modes.split(","):
            if mode == "rmtl":
                summary, parameters = run_rmtl(dataset_path)
            else:
                summary, parameters = run_method(dataset_path, mode)
            summary["world_size"] = distributed.world_size()
            summary.update(_collective_checks())
            (folder / f"{mode}_rank{rank}.json").write_text(json.dumps(summary))
            np.savez(folder / f"{mode}_rank{rank}.npz", **parameters)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
