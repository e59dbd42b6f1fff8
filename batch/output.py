"""The scored output: a directory of Parquet parts written atomically, resumable.

::

    out.parquet/
        _plan.json           written first: what each partition holds (input hash, options)
        part-00000.parquet   one per partition, written to a temp name then renamed
        ...
        _manifest.json       written last: the job is complete when it exists

``pandas.read_parquet("out.parquet")`` reads the parts (pyarrow skips names starting with
``_`` or ``.``). A killed job leaves only whole parts (and perhaps a ``.part-*.tmp-*`` file,
removed on resume); ``--resume`` checks that the plan matches and redoes only missing parts.
``nareta score`` holds ``out.parquet.lock`` meanwhile (:mod:`batch.lock`): one writer at a
time.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from nareta.artifacts import check_output_dir
from nareta.errors import InputError, OutputExistsError, OutputNotWritableError

PLAN_NAME = "_plan.json"
MANIFEST_NAME = "_manifest.json"
_TEMP_PREFIX = ".part-"


def _file_mode() -> int:
    """The mode a plain ``open()`` would give (mkstemp makes files private)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


class PartitionedOutput:
    """An output directory for one planned job. Open it with :meth:`open`."""

    def __init__(self, root: Path, plan: dict[str, Any]):
        self.root = root
        self.plan = plan

    @classmethod
    def open(cls, root: str | Path, plan: dict[str, Any], *, resume: bool = False,
             force: bool = False) -> tuple[PartitionedOutput, set[int]]:
        """Prepare ``root`` for ``plan``; return it and the partitions already written.

        ``plan`` must hold ``fingerprint`` (equal plans score the same rows the same way)
        and ``partition_rows_each`` (the row count of every partition).
        """
        root = Path(root)
        if root.exists() and not root.is_dir():
            if not force:
                raise OutputExistsError(f"output {root}: exists and is not a directory; "
                                        "pass --force to replace it")
            root.unlink()
        if root.is_dir():
            if force:
                shutil.rmtree(root)
            elif not resume:
                raise OutputExistsError(
                    f"output {root}: already exists; pass --resume to finish an interrupted "
                    "job or --force to replace it")
        output = cls(root, plan)
        if root.is_dir():
            return output, output._resume()
        check_output_dir(root, force=False)
        try:
            root.mkdir()
        except OSError as exc:
            raise OutputNotWritableError(f"output {root}: cannot create ({exc.strerror})") from exc
        output._write_json(PLAN_NAME, plan)
        return output, set()

    def _resume(self) -> set[int]:
        for stale in self.root.glob(f"{_TEMP_PREFIX}*"):
            # a part that was being written when the job died: no live writer's, since the
            # caller holds the output's single-writer lock (batch.lock)
            stale.unlink()
        plan_path = self.root / PLAN_NAME
        if not plan_path.is_file():
            unexpected = sorted(p.name for p in self.root.iterdir())
            if unexpected:
                raise InputError(
                    f"output {self.root}: has no {PLAN_NAME}, so it is not a `nareta score` "
                    f"output that can be resumed (it holds {', '.join(unexpected[:5])}); "
                    "pass --force to replace it")
            self._write_json(PLAN_NAME, self.plan)
            return set()
        try:
            previous = json.loads(plan_path.read_text())
        except ValueError as exc:
            raise InputError(f"output {self.root}: {PLAN_NAME} is not valid JSON ({exc}); "
                             "pass --force to start again") from exc
        if previous.get("fingerprint") != self.plan["fingerprint"]:
            raise InputError(
                f"output {self.root}: was started with a different input, graph, model or "
                "options, so its parts cannot be reused; pass --force to start again")
        (self.root / MANIFEST_NAME).unlink(missing_ok=True)
        done = set()
        for index, rows in enumerate(self.plan["partition_rows_each"]):
            path = self.root / part_name(index)
            if not path.is_file():
                continue
            try:
                written = pq.ParquetFile(path).metadata.num_rows
            except Exception:  # unreadable: redo it
                written = -1
            if written == rows:
                done.add(index)
            else:
                path.unlink()
        return done

    def write_part(self, index: int, frame: pd.DataFrame) -> Path:
        """Write one partition: a temp file in the same directory, then an atomic rename."""
        final = self.root / part_name(index)
        handle, temp_name = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{index:05d}.",
                                             suffix=".tmp", dir=self.root)
        os.close(handle)
        try:
            frame.to_parquet(temp_name, index=False)
            os.chmod(temp_name, _file_mode())
            os.replace(temp_name, final)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return final

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self._write_json(MANIFEST_NAME, manifest)

    def _write_json(self, name: str, content: dict[str, Any]) -> None:
        handle, temp_name = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{name}.", suffix=".tmp",
                                             dir=self.root)
        with os.fdopen(handle, "w") as stream:
            json.dump(content, stream, indent=2, sort_keys=True, default=str)
        os.chmod(temp_name, _file_mode())
        os.replace(temp_name, self.root / name)

    def status_counts(self) -> dict[str, int]:
        """Rows per status over every written part."""
        counts: dict[str, int] = {}
        for index in range(len(self.plan["partition_rows_each"])):
            statuses = pd.read_parquet(self.root / part_name(index), columns=["status"])
            for status, number in statuses["status"].value_counts().items():
                counts[str(status)] = counts.get(str(status), 0) + int(number)
        return dict(sorted(counts.items()))
