"""The run directory contract: config, summary, model, genotype, metrics, plots, checkpoints."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dha_core.errors import UserInputError

if TYPE_CHECKING:
    from dha_core.config import RunConfig

__all__ = ["RunDir", "MetricsLog", "atomic_write_text", "check_creatable", "default_run_name"]


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Writes text through a temp file and ``os.replace``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_creatable(path: Path, what: str = "folder") -> None:
    """Checks that the folder ``path`` exists or can be created, leaving nothing behind.

    Args:
        path: The folder.
        what: What it is, for the message (``"run directory"``, ``"sweep folder"``).

    Raises:
        UserInputError: A file is in the way, or the nearest existing parent cannot be
            written (permissions, a read-only mount, a virtual file system such as /proc).
    """
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserInputError(f"output: cannot create {what} {path}: {probe} is not a directory")
    if not os.access(probe, os.W_OK):
        raise UserInputError(f"output.dir: {probe} is not writable")
    # os.access trusts permission bits (and root passes them): a read-only mount or a
    # virtual file system such as /proc only shows when something is created there.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".dha-probe-", dir=probe))
    except OSError as exc:
        raise UserInputError(f"output: cannot create {what} {path}: {exc.strerror or exc} (in {probe})") from None


def default_run_name(config: RunConfig) -> str:
    parts = [config.space.name, config.relax.name, config.aug.name, config.hpo.name]
    return time.strftime("%Y%m%d-%H%M%S") + "-" + "-".join(parts)


class RunDir:
    """Paths of one run. Creating it is the last thing a search does before training."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def check_new(cls, path: Path, overwrite: bool) -> RunDir:
        """Validates that ``path`` can hold a new run (leaving nothing behind).

        Args:
            path: The run directory to be.
            overwrite: Whether an existing non-empty directory may be written into.

        Returns:
            The :class:`RunDir`.

        Raises:
            UserInputError: ``path`` is a file, a non-empty directory (without ``overwrite``),
                or cannot be created (a read-only or virtual file system, a file in the way).
        """
        if path.exists() and not path.is_dir():
            raise UserInputError(f"output: {path} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise UserInputError(f"output: run directory {path} already exists and is not empty "
                                 "(set output.overwrite=true or pick another output.name)")
        check_creatable(path, "run directory")
        return cls(path)

    def create(self) -> None:
        """Creates the run directory and its ``plots/`` and ``checkpoints/`` folders.

        Raises:
            UserInputError: The directory cannot be created (one line naming it).
        """
        try:
            (self.path / "plots").mkdir(parents=True, exist_ok=True)
            (self.path / "checkpoints").mkdir(exist_ok=True)
        except OSError as exc:
            raise UserInputError(f"output: cannot create run directory {self.path}: {exc.strerror or exc}") from None

    config = property(lambda self: self.path / "config.yaml")
    summary = property(lambda self: self.path / "summary.json")
    model = property(lambda self: self.path / "model.pt")
    genotype = property(lambda self: self.path / "genotype.json")
    metrics = property(lambda self: self.path / "metrics.csv")
    plots = property(lambda self: self.path / "plots")
    last_checkpoint = property(lambda self: self.path / "checkpoints" / "last.pt")

    def write_json(self, path: Path, data: Any) -> None:
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


class MetricsLog:
    """Rows of logged metrics, written to CSV (union of all keys as columns)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def columns(self) -> list[str]:
        cols: dict[str, None] = {}
        for row in self.rows:
            for key in row:
                cols.setdefault(key, None)
        return list(cols)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns(), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _fmt(v) for k, v in row.items()})
        return buf.getvalue()

    def save(self, path: Path) -> None:
        atomic_write_text(path, self.to_csv())

    @classmethod
    def load(cls, path: Path, max_step: int | None = None) -> MetricsLog:
        """Reads a metrics CSV, keeping rows up to ``max_step`` (to match a checkpoint)."""
        log = cls()
        if not path.is_file():
            return log
        with path.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                parsed = {k: _parse(v) for k, v in row.items() if v != ""}
                if max_step is not None and int(parsed.get("step", 0)) > max_step:
                    continue
                log.rows.append(parsed)
        return log

    def series(self, key: str, where: dict[str, Any] | None = None) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for row in self.rows:
            if key in row and all(row.get(k) == v for k, v in (where or {}).items()):
                xs.append(float(row.get("step", len(xs))))
                ys.append(float(row[key]))
        return xs, ys


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return value


def _parse(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
