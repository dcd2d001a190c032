"""Reading interaction logs and preparing RL datasets from them."""

from recrl.data.dataset import PreparedDataset, PrepareOptions, load_prepared, prepare
from recrl.data.log import FeatureTable, InteractionLog
from recrl.data.readers import TableSchema, read_kuairand, read_otto, read_table, read_taobao
from recrl.data.synthetic import SyntheticConfig, write_synthetic_kuairand

__all__ = [
    "FeatureTable",
    "InteractionLog",
    "PrepareOptions",
    "PreparedDataset",
    "SyntheticConfig",
    "TableSchema",
    "load_prepared",
    "prepare",
    "read_kuairand",
    "read_otto",
    "read_table",
    "read_taobao",
    "write_synthetic_kuairand",
]
