"""Plain-Python reading of delimited text into typed columns, written for clarity, not speed."""

from __future__ import annotations

import numpy as np


def read_columns(
    text: str, columns: list[tuple[str, str]], delimiter: str = ","
) -> dict[str, object]:
    lines = text.split("\n")
    header = [name.strip() for name in lines[0].removesuffix("\r").split(delimiter)]
    positions = {name: header.index(name) for name, _ in columns}
    values: dict[str, list[object]] = {name: [] for name, _ in columns}
    for line in lines[1:]:
        line = line.removesuffix("\r")
        if not line:
            continue
        fields = line.split(delimiter)
        assert len(fields) == len(header)
        for name, _ in columns:
            values[name].append(fields[positions[name]])
    result: dict[str, object] = {}
    for name, kind in columns:
        texts = values[name]
        if kind in ("int64", "uint8"):
            result[name] = np.asarray([int(str(t).strip()) for t in texts], dtype=kind)
        elif kind in ("float32", "float64"):
            numbers = [float(str(t).strip()) if str(t).strip() else float("nan") for t in texts]
            # Values beyond float32 become infinite, as a Rust `as f32` cast makes them.
            with np.errstate(over="ignore"):
                result[name] = np.asarray(numbers, dtype=np.float64).astype(kind)
        else:
            labels: list[str] = []
            codes = []
            for t in texts:
                if t == "":
                    codes.append(0)
                    continue
                if t not in labels:
                    labels.append(str(t))
                codes.append(labels.index(str(t)) + 1)
            result[name] = (np.asarray(codes, dtype=np.int64), labels)
    return result
