"""Read what an *offline* W&B run recorded, without the network (``wandb.Api`` needs it).

    from anomaly_kd.reporting.wandb_offline import find_offline_runs, read_offline_run
    run = read_offline_run(find_offline_runs("multirun/<time>")[0])
    run["group"], run["config"]["model"]["name"], run["summary"]["test/image_auroc"]

An offline run folder (``wandb/offline-run-<time>-<id>/``) holds ``run-<id>.wandb``, a record log
(W&B's LevelDB-style format: a 7-byte file header, 32 KiB blocks of chunks with a 7-byte header
each: CRC-32C, length, type full/first/middle/last) of ``wandb_internal_pb2.Record`` messages, and
``files/media/`` with the logged images and tables. Used by the tests to check what the jobs of a
sweep sent to W&B; handy to inspect a run before ``wandb sync``.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

_BLOCK = 32 * 1024
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_records(path: str | os.PathLike):
    """The ``Record`` protobuf messages of a ``run-<id>.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run log")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        pos += _HEADER
        chunk, pos = data[pos : pos + length], pos + length
        if kind == 0:
            continue
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _set_nested(target: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def _items(updates) -> list[tuple[list[str], Any]]:
    out = []
    for item in updates:
        keys = list(item.nested_key) or [item.key]
        out.append((keys, json.loads(item.value_json)))
    return out


def read_offline_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Run attributes, config, summary, history rows and files of an offline run folder."""
    run_dir = Path(run_dir)
    log_file = next(run_dir.glob("run-*.wandb"))
    out: dict[str, Any] = {"dir": run_dir, "config": {}, "summary": {}, "history": [], "files": [],
                           "exit_code": None}
    for record in iter_records(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(id=run.run_id, project=run.project, entity=run.entity, group=run.run_group,
                       job_type=run.job_type, name=run.display_name, tags=list(run.tags))
            for keys, value in _items(run.config.update):
                _set_nested(out["config"], keys, value)
        elif kind == "config":
            for keys, value in _items(record.config.update):
                _set_nested(out["config"], keys, value)
        elif kind == "summary":
            for keys, value in _items(record.summary.update):
                _set_nested(out["summary"], keys, value)
        elif kind == "history":
            row: dict[str, Any] = {}
            for keys, value in _items(record.history.item):
                _set_nested(row, keys, value)
            out["history"].append(row)
        elif kind == "files":
            out["files"] += [f.path for f in record.files.files]
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    out["config"].pop("_wandb", None)
    return out


def find_offline_runs(root: str | os.PathLike) -> list[Path]:
    """Every ``offline-run-*`` folder under ``root``, sorted."""
    return sorted(p for p in Path(root).rglob("offline-run-*") if p.is_dir())


def read_table(run_dir: str | os.PathLike, summary_entry: dict) -> dict[str, Any]:
    """The JSON of a logged ``wandb.Table`` (``{"columns": [...], "data": [[...], ...]}``)."""
    return json.loads((Path(run_dir) / "files" / summary_entry["path"]).read_text())


__all__ = ["find_offline_runs", "iter_records", "read_offline_run", "read_table"]
