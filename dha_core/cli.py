"""The ``dha`` command line.

Exit codes: 0 success; 2 bad input (one line on stderr naming the field or file, nothing
written); 1 internal errors and runs stopped by non-finite losses; 130 after Ctrl-C (a
checkpoint is written first).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from dha_core.errors import NonFiniteError, UserInputError

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
    ls.add_argument("--kind", choices=["space", "relax", "aug", "hpo", "dataset"])

    search = sub.add_parser("search", help="run a search")
    search.add_argument("--config", "-c", required=True, help="YAML config file")
    search.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set aug.name=none")
    search.add_argument("--out", help="run directory (default: output.dir/output.name)")
    search.add_argument("--skip-bad-images", action="store_true", help="log and skip unreadable images")

    resume = sub.add_parser("resume", help="continue an interrupted run")
    resume.add_argument("run_dir")

    ev = sub.add_parser("eval", help="evaluate a run's model.pt on the test split")
    ev.add_argument("run_dir")
    ev.add_argument("--data", help="dataset name to evaluate on instead of the run's")
    ev.add_argument("--split", default="test", choices=["train", "val", "test"])
    ev.add_argument("--json", action="store_true")

    ex = sub.add_parser("export", help="export a run's model")
    ex.add_argument("run_dir")
    ex.add_argument("--format", required=True, choices=["torchscript", "onnx"])
    ex.add_argument("--output", help="output file (default: RUN_DIR/model.<ext>)")

    ab = sub.add_parser("ablate", help="run a grid of searches swapping components, over seeds")
    ab.add_argument("--config", "-c", required=True)
    ab.add_argument("--swap", action="append", default=[], metavar="KIND=A,B,...", required=True,
                    help="component values to swap, e.g. aug=kornia,none (repeatable)")
    ab.add_argument("--seeds", type=int, default=1)
    ab.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ab.add_argument("--out", help="folder for the grid's runs and table")
    return p


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


def cmd_search(args: argparse.Namespace) -> int:
    from dha_core.config import load_config
    from dha_core.searcher import Searcher

    overrides = list(args.overrides)
    if args.skip_bad_images:
        overrides.append("data.skip_bad_images=true")
    config = load_config(args.config, overrides)
    if args.quiet:
        config.train.progress = False
    result = Searcher(config, run_dir=args.out).fit()
    _print_summary(result.summary, result.run_dir)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from dha_core.searcher import Searcher

    run = Path(args.run_dir)
    if (run / "summary.json").is_file():
        raise UserInputError(f"{run}: this run has already finished (summary.json exists)")
    searcher = Searcher.from_run_dir(run)
    if args.quiet:
        searcher.config.train.progress = False
    result = searcher.fit()
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


def cmd_ablate(args: argparse.Namespace) -> int:
    from dha_core.ablate import run_ablation

    table = run_ablation(args.config, args.swap, args.seeds, args.overrides, Path(args.out) if args.out else None,
                         progress=not args.quiet)
    print(table)
    return 0


COMMANDS = {"list": cmd_list, "search": cmd_search, "resume": cmd_resume, "eval": cmd_eval, "export": cmd_export,
            "ablate": cmd_ablate}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dha`` console script.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    from dha_core.searcher import Interrupted

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return COMMANDS[args.command](args)
    except UserInputError as exc:
        sys.stderr.write(f"dha: error: {exc}\n")
        return 2
    except NonFiniteError as exc:
        sys.stderr.write(f"dha: error: {exc}\n")
        return 1
    except Interrupted as exc:
        sys.stderr.write(f"dha: {exc}\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
