"""Serving: export a trained policy to one file, and score candidates with it in Rust.

:class:`Scorer` (``recrl._core.Scorer``) loads a file written by the export functions and
scores requests without torch. It releases the GIL while scoring, so threads can share one
instance.
The export functions import torch only when called.
"""

from recrl._core import Scorer, fuse_scores, select_top_k
from recrl.serving.export import (
    FORMAT_VERSION,
    Fusion,
    Normalisation,
    export_categorical_actor,
    export_fusion,
    export_mlp,
    read_policy_metadata,
    write_policy,
)
from recrl.serving.run import export_run, locate_actor

__all__ = [
    "FORMAT_VERSION",
    "Fusion",
    "Normalisation",
    "Scorer",
    "export_categorical_actor",
    "export_fusion",
    "export_mlp",
    "export_run",
    "fuse_scores",
    "locate_actor",
    "read_policy_metadata",
    "select_top_k",
    "write_policy",
]
