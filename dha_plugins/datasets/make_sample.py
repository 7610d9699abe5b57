"""Builds the ``sample`` dataset shipped in the package from the CIFAR-10 JPEG tarball.

Usage::

    python -m dha_plugins.datasets.make_sample ../shared/data/cifar10-jpeg.tar.gz

It copies the original JPEG bytes (no re-encoding) of the first ``--train-per-class`` and
``--test-per-class`` files per class, in sorted file-name order, into
``dha_plugins/datasets/data/sample-cifar10.zip``. The result is deterministic.
"""

from __future__ import annotations

import argparse
import tarfile
import zipfile
from collections import defaultdict
from pathlib import Path

OUTPUT = Path(__file__).parent / "data" / "sample-cifar10.zip"


def build_sample(source: Path, output: Path, train_per_class: int, test_per_class: int) -> dict[str, int]:
    """Writes the sample zip; returns the number of images per split."""
    limits = {"train": train_per_class, "test": test_per_class}
    picked: dict[tuple[str, str], list[tarfile.TarInfo]] = defaultdict(list)
    with tarfile.open(source, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")), key=lambda m: m.name)
        for m in members:
            parts = Path(m.name).parts
            split, cls = parts[-3], parts[-2]
            if split in limits and len(picked[split, cls]) < limits[split]:
                picked[split, cls].append(m)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_suffix(".tmp")
        counts = {"train": 0, "test": 0}
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for (split, cls), ms in sorted(picked.items()):
                for m in ms:
                    data = tar.extractfile(m).read()  # type: ignore[union-attr]
                    # A fixed timestamp keeps the archive byte-identical across builds.
                    info = zipfile.ZipInfo(f"{split}/{cls}/{Path(m.name).name}", date_time=(2020, 1, 1, 0, 0, 0))
                    zf.writestr(info, data)
                    counts[split] += 1
        tmp.replace(output)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="cifar10-jpeg.tar.gz")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=50)
    args = parser.parse_args()
    counts = build_sample(args.source, args.output, args.train_per_class, args.test_per_class)
    size = args.output.stat().st_size
    print(f"wrote {args.output} ({size / 1e6:.2f} MB): {counts}")


if __name__ == "__main__":
    main()
