"""The ``dha`` command line.

Exit codes: 0 success; 2 bad input (one line on stderr naming the field or file, nothing
written); 1 internal errors and runs stopped by non-finite losses; 130 after Ctrl-C (a
checkpoint is written first).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from dha_core.errors import NonFiniteError, UserInputError
from dha_core.kinds import KINDS

__all__ = ["main"]

log = logging.getLogger("dha")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"dha: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dha", description="End-to-end joint search of augmentation, hyper-parameters and architecture.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ls = sub.add_parser("list", help="list registered components")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--kind", choices=list(KINDS))

    search = sub.add_parser("search", help="run a search")
    search.add_argument("--config", "-c", required=True, type=_path, help="YAML config file")
    search.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set aug.name=none")
    search.add_argument("--out", type=_path, help="run directory (default: output.dir/output.name)")
    search.add_argument("--skip-bad-images", action="store_true", help="log and skip unreadable images")
    search.add_argument("--nproc", type=_positive_int, metavar="N",
                        help="run this one search on N processes of this node (launches torchrun; "
                             "train.batch_size is per process)")

    resume = sub.add_parser("resume", help="continue an interrupted run")
    resume.add_argument("run_dir", type=_path)
    resume.add_argument("--nproc", type=_positive_int, metavar="N", help="continue on N processes (torchrun)")

    ev = sub.add_parser("eval", help="evaluate a run's model.pt on the test split")
    ev.add_argument("run_dir", type=_path)
    ev.add_argument("--data", help="dataset name to evaluate on instead of the run's")
    ev.add_argument("--split", default="test", choices=["train", "val", "test"])
    ev.add_argument("--json", action="store_true")

    ex = sub.add_parser("export", help="export a run's model")
    ex.add_argument("run_dir", type=_path)
    ex.add_argument("--format", required=True, choices=["torchscript", "onnx"])
    ex.add_argument("--output", type=_path, help="output file (default: RUN_DIR/model.<ext>)")

    sw = sub.add_parser("sweep", help="run many searches: a grid of settings x seeds, locally or on Ray Tune")
    _sweep_arguments(sw)

    ab = sub.add_parser("ablate", help="swap components over seeds (an alias of sweep with --grid KIND.name=...)")
    ab.add_argument("--swap", action="append", default=[], metavar="KIND=A,B,...",
                    help="component values to swap, e.g. aug=kornia,none (repeatable)")
    _sweep_arguments(ab)
    return p


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _float_at_least(low: float, strict: bool) -> Any:
    """argparse type: a finite number > ``low`` (``strict``) or >= ``low``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if strict else '>='} {low:g}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def _path(text: str) -> str:
    """argparse type: a non-empty path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    return text


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, type=_path, help="base YAML config")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="an axis of the grid over any config key, e.g. aug.temperature=0.25,0.5 (repeatable)")
    p.add_argument("--seeds", type=_positive_int, default=1, help="repetitions per grid cell (train.seed, +1, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override applied to every search")
    p.add_argument("--out", type=_path, help="folder for the searches, the tables and Tune's state")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: one search after another in this process; ray: Ray Tune trials")
    p.add_argument("--resume", action="store_true", help="continue a sweep in --out: reuse finished searches, "
                                                         "resume interrupted ones from their checkpoints")
    ray = p.add_argument_group("ray engine")
    ray.add_argument("--ray-address", help="Ray cluster to join (default: RAY_ADDRESS, else a local instance)")
    ray.add_argument("--num-cpus", type=_positive_int, help="CPUs of a local Ray instance started here")
    ray.add_argument("--cpus-per-trial", type=_float_at_least(0, strict=True), default=1.0,
                     help="CPUs reserved per trial (> 0)")
    ray.add_argument("--gpus-per-trial", type=_float_at_least(0, strict=False), default=0.0,
                     help="GPUs reserved per trial (>= 0; fractions share a GPU)")
    ray.add_argument("--max-concurrent", type=_positive_int, help="trials running at once (default: as resources allow)")
    ray.add_argument("--search-alg", choices=["optuna"], help="sample the grid's values with Optuna TPE instead of "
                                                              "running every cell")
    ray.add_argument("--num-samples", type=_positive_int, default=8, help="configurations --search-alg tries")
    ray.add_argument("--scheduler", choices=["asha"], help="stop poor trials early at epoch ends (ASHA)")
    ray.add_argument("--metric", default="val_acc", choices=["val_acc", "val_loss"],
                     help="metric for --search-alg/--scheduler (reported per epoch)")
    ray.add_argument("--mode", choices=["max", "min"], default="max")


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.captureWarnings(True)


def cmd_list(args: argparse.Namespace) -> int:
    from dha_core.registry import get_registry, list_components

    registry = get_registry()
    names = list_components(args.kind)
    if args.json:
        out: dict[str, Any] = {
            kind: [{"name": c.name, "provider": c.provider, "description": c.description}
                   for c in registry.components(kind)]
            for kind in names
        }
        if registry.failed_plugins:
            out["failed_plugins"] = registry.failed_plugins
        print(json.dumps(out, indent=2))
        return 0
    for kind, comps in names.items():
        print(f"{kind}:")
        for c in registry.components(kind):
            print(f"  {c.name:<16} {c.description}  [{c.provider}]")
    for name, err in registry.failed_plugins.items():
        print(f"failed plugin {name}: {err}")
    return 0


def _print_summary(summary: dict[str, Any], run_dir: Path | None) -> None:
    rows = [
        ("components", " / ".join(f"{k}={v}" for k, v in summary["components"].items())),
        ("test accuracy", f"{100 * summary['test_acc']:.2f}%"),
        ("val accuracy", f"{100 * summary['val_acc']:.2f}%"),
        ("params", f"{summary['params']:,}"),
        ("FLOPs", f"{summary['flops']:,}"),
        ("final lr / wd", f"{_fmt(summary.get('final_lr'))} / {_fmt(summary.get('final_wd'))}"),
        ("steps", str(summary["steps"])),
        ("wall time", f"{summary['wall_s']:.1f}s"),
    ]
    top = summary.get("policy", {}).get("top")
    if top:
        rows.append(("top policy pairs", ", ".join(_pair(t) for t in top[:3])))
    if run_dir is not None:
        rows.append(("run directory", str(run_dir)))
    width = max(len(k) for k, _ in rows)
    print("| " + "result".ljust(width) + " | value |")
    print("|" + "-" * (width + 2) + "|-------|")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")


def _pair(entry: Any) -> str:
    if isinstance(entry, dict):
        ops = entry.get("ops") or entry.get("pair") or []
        prob = entry.get("prob")
        text = "+".join(str(o) for o in ops) if isinstance(ops, (list, tuple)) else str(ops)
        return f"{text} ({prob:.3f})" if isinstance(prob, float) else text
    return str(entry)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _global_flags(args: argparse.Namespace) -> list[str]:
    return [flag for flag, on in (("-v", args.verbose), ("-q", args.quiet)) if on]


def _torchrun(nproc: int, argv: list[str]) -> int:
    """Runs ``python -m dha_core.cli ARGV`` on ``nproc`` local processes with torchrun."""
    from dha_core.distributed import env_world_size

    if env_world_size() > 1 or "TORCHELASTIC_RUN_ID" in os.environ:
        raise UserInputError("--nproc: this process was already started by torchrun; drop --nproc")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "dha_core.cli", *argv]
    log.info("launching: %s", " ".join(command))
    proc = subprocess.Popen(command)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached the workers too: rank 0 writes a checkpoint before they exit.
        proc.wait()
        return 130


def cmd_search(args: argparse.Namespace) -> int:
    from dha_core.config import load_config
    from dha_core.distributed import is_main_process
    from dha_core.searcher import Searcher

    overrides = list(args.overrides)
    if args.skip_bad_images:
        overrides.append("data.skip_bad_images=true")
    config = load_config(args.config, overrides)
    if args.quiet:
        config.train.progress = "off"
    searcher = Searcher(config, run_dir=args.out)
    if args.nproc is not None and args.nproc > 1:
        # Check the output here, so that bad input fails once with one line, and fix the
        # run directory's name for all processes.
        from dha_core.rundir import RunDir

        RunDir.check_new(searcher.run.path, config.output.overwrite)
        argv = [*_global_flags(args), "search", "--config", args.config, "--out", str(searcher.run.path)]
        argv += [item for o in args.overrides for item in ("--set", o)]
        argv += ["--skip-bad-images"] if args.skip_bad_images else []
        return _torchrun(args.nproc, argv)
    result = searcher.fit()
    if is_main_process():
        _print_summary(result.summary, result.run_dir)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from dha_core.distributed import is_main_process
    from dha_core.searcher import Searcher

    run = Path(args.run_dir)
    if (run / "summary.json").is_file():
        raise UserInputError(f"{run}: this run has already finished (summary.json exists)")
    searcher = Searcher.from_run_dir(run)
    if args.nproc is not None and args.nproc > 1:
        return _torchrun(args.nproc, [*_global_flags(args), "resume", str(run)])
    if args.quiet:
        searcher.config.train.progress = "off"
    result = searcher.fit()
    if is_main_process():
        _print_summary(result.summary, result.run_dir)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from dha_core.evaluation_cli import evaluate_run

    out = evaluate_run(Path(args.run_dir), data=args.data, split=args.split)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        reported = out.get("reported_test_acc")
        extra = f" (reported: {100 * reported:.2f}%)" if reported is not None and args.split == "test" else ""
        print(f"{out['split']} accuracy: {100 * out['acc']:.2f}% on {int(out['n'])} images{extra}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from dha_core.export import export_run

    path = export_run(Path(args.run_dir), args.format, Path(args.output) if args.output else None)
    print(f"wrote {path}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    return _sweep(args)[0]


def _sweep(args: argparse.Namespace) -> tuple[int, Path]:
    """Runs ``dha sweep``; returns the exit code and the sweep's folder."""
    from dha_core.sweep import RayOptions, Sweep, run_sweep

    sweep = Sweep.from_file(args.config, args.grid, args.seeds, args.overrides, args.out, progress=not args.quiet)
    options = RayOptions(address=args.ray_address, num_cpus=args.num_cpus, cpus_per_trial=args.cpus_per_trial,
                         gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
                         search_alg=args.search_alg, num_samples=args.num_samples, scheduler=args.scheduler,
                         metric=args.metric, mode=args.mode)
    if args.engine == "local" and (args.search_alg or args.scheduler):
        raise UserInputError("--search-alg/--scheduler: need --engine ray")
    table, rows = run_sweep(sweep, args.engine, resume=args.resume, ray_options=options)
    print(table)
    print(f"tables: {sweep.out / 'sweep.md'}, {sweep.out / 'sweep.csv'} (per trial: {sweep.out / 'trials.csv'})")
    failed = [r for r in rows if r["status"] == "error"]
    for row in failed:
        sys.stderr.write(f"dha: trial {row['cell']} seed {row['seed']} failed: {row['error']}\n")
    return (1 if failed else 0), sweep.out


def cmd_ablate(args: argparse.Namespace) -> int:
    from dha_core.ablate import swaps_to_grid

    if not args.swap and not args.grid:
        raise UserInputError("ablate: give at least one --swap KIND=A,B,...")
    args.grid = [*swaps_to_grid(args.swap), *args.grid]
    code, _ = _sweep(args)
    return code


def _rank_tag() -> str:
    """``"[rank N] "`` under torchrun on ranks other than 0 (rank 0 speaks plainly)."""
    rank = os.environ.get("RANK", "0")
    return "" if rank == "0" else f"[rank {rank}] "


COMMANDS = {"list": cmd_list, "search": cmd_search, "resume": cmd_resume, "eval": cmd_eval, "export": cmd_export,
            "sweep": cmd_sweep, "ablate": cmd_ablate}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dha`` console script.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    args = _parser().parse_args(argv)
    # Under torchrun only rank 0 speaks: the other ranks keep to warnings.
    _setup_logging(args.verbose, args.quiet or os.environ.get("RANK", "0") != "0")
    from dha_core.searcher import Interrupted

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return COMMANDS[args.command](args)
    except UserInputError as exc:
        sys.stderr.write(f"dha: {_rank_tag()}error: {exc}\n")
        return 2
    except NonFiniteError as exc:
        sys.stderr.write(f"dha: {_rank_tag()}error: {exc}\n")
        return 1
    except Interrupted as exc:
        sys.stderr.write(f"dha: {exc}\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
