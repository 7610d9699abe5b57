"""The end of a run: the ready model, its evaluation, ``summary.json``, ``model.pt``, the plots.

:class:`ResultWriter` turns the last stage into the ready-to-use model (the child derived
from the supernet, or the child a retrain or finetune stage trained), evaluates it on the
test and validation splits and writes the run directory. In a distributed run rank 0
evaluates and writes; the other ranks receive its summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dha_core.config import RunConfig
from dha_core.costs import count_flops, count_params
from dha_core.bn_recalibration import recalibrate_batchnorm
from dha_core.data import eval_batches, shuffled_batches
from dha_core.distributed import DistContext
from dha_core.evaluate import evaluate
from dha_core.fixed_network import FixedNetwork
from dha_core.kinds import CONFIG_FIELDS
from dha_core.model_io import NormalizedModel, save_model
from dha_core.precision import RunPerformance
from dha_core.rundir import RunDir
from dha_core.seeds import StreamOffset
from dha_core.stage import Stage, StageSpec
from dha_core.stage_builder import StageBuilder
from dha_core.stage_runner import RunState
from dha_core.types import Selection, selection_from_json, selection_to_json

__all__ = ["ResultWriter", "SearchResult"]


@dataclass
class SearchResult:
    """What :meth:`Searcher.fit <dha_core.searcher.Searcher.fit>` returns.

    Attributes:
        model: The ready-to-use model (takes ``[0, 1]`` images), in eval mode.
        genotype: The space's description of the selected architecture.
        summary: Everything written to ``summary.json``.
        selection: The discrete selection per choice group.
        run_dir: The run directory.
    """

    model: NormalizedModel
    genotype: dict[str, Any]
    summary: dict[str, Any]
    selection: Selection = field(default_factory=dict)
    run_dir: Path | None = None


class ResultWriter:
    """Evaluates the final model and writes the run directory.

    Args:
        config: The validated run config.
        builder: The run's stage builder (dataset, space, device).
        perf: Precision, memory format and compile settings.
        run: The run directory.
        plan: The run's stages (for the budgets they were given).
        dist: The distributed context, or None for a single process.
    """

    def __init__(self, config: RunConfig, builder: StageBuilder, perf: RunPerformance, run: RunDir,
                 plan: list[StageSpec], dist: DistContext | None = None) -> None:
        self.config = config
        self.builder = builder
        self.perf = perf
        self.run = run
        self.plan = plan
        self.dist = dist

    def finish(self, stage: Stage, state: RunState) -> SearchResult:
        """The result of a run whose last stage is ``stage``."""
        space, bundle, device = self.builder.space, self.builder.bundle, self.builder.device
        if stage.spec.searches:
            child = space.derive(stage.net, state.selection)
        else:
            assert isinstance(stage.net, FixedNetwork)
            child = stage.net.net
        self.perf.restore_module(child)  # the saved model is contiguous fp32, like a reload
        model = NormalizedModel.for_data(child, bundle.spec).to(device).eval()
        # Every rank recalibrates (the same batches), so every rank returns the same model.
        recalibration = self._recalibrate(model, evaluate_before=self.dist is None or self.dist.is_main)
        if self.dist is None:
            return self._evaluate_and_write(model, child, stage, state, recalibration)
        # Rank 0 evaluates and writes; the others wait for its summary (or its failure).
        summary: dict[str, Any] | None = None
        if self.dist.is_main:
            try:
                summary = self._evaluate_and_write(model, child, stage, state, recalibration).summary
            except BaseException as exc:
                self.dist.broadcast({"error": f"rank 0 failed while finishing: {type(exc).__name__}: {exc}"})
                raise
        received = self.dist.broadcast({"summary": summary})
        if "error" in received:
            raise RuntimeError(received["error"])
        summary = received["summary"]
        assert summary is not None
        return SearchResult(model=model, genotype=summary["genotype"], summary=summary, selection=state.selection,
                            run_dir=self.run.path)

    def _evaluate(self, model: NormalizedModel, split: str) -> dict[str, float]:
        train = self.config.train
        batches = eval_batches(self.builder.bundle.dataset.split(split), train.eval_batch_size, train.workers)
        return evaluate(model, batches, self.builder.device)

    def _recalibrate(self, model: NormalizedModel, evaluate_before: bool) -> dict[str, Any] | None:
        """Re-estimates the batch-norm statistics (``train.bn_recalibration_batches``) and
        reports the test and validation accuracy of the model before it."""
        train = self.config.train
        if train.bn_recalibration_batches == 0:
            return None
        before = {split: self._evaluate(model, split)["acc"] for split in ("test", "val")} if evaluate_before else {}
        dataset = self.builder.bundle.dataset.split("train")
        batches = shuffled_batches(dataset, train.batch_size, train.seed + StreamOffset.BN_RECALIBRATION,
                                   train.workers)
        used = recalibrate_batchnorm(model, batches, self.builder.device, train.bn_recalibration_batches)
        return {"batches": used, "images": used * min(train.batch_size, len(dataset)),
                "test_acc_before": before.get("test"), "val_acc_before": before.get("val")}

    def _performance(self, reports: dict[str, Any]) -> dict[str, Any]:
        """The resolved throughput settings, with each stage's measured memory format."""
        performance = self.perf.describe()
        timings = reports.get("memory_format")
        if timings:
            performance["channels_last"] = {name: t["channels_last"] for name, t in timings.items()}
            performance["memory_format_timing"] = timings
        return performance

    def _budget_used(self, state: RunState) -> dict[str, float]:
        """Fraction of each stage's time budget spent on training."""
        return {spec.name: state.stage_train_s.get(spec.name, 0.0) / spec.time_budget_s for spec in self.plan
                if spec.time_budget_s is not None}

    def _evaluate_and_write(self, model: NormalizedModel, child: torch.nn.Module, stage: Stage,
                            state: RunState, recalibration: dict[str, Any] | None) -> SearchResult:
        config, space, reports, selection = self.config, self.builder.space, state.reports, state.selection
        test = self._evaluate(model, "test")
        val = self._evaluate(model, "val")
        genotype = space.genotype(selection)
        example = space.example_input().to(self.builder.device)
        hyper = reports.get("hpo", {}).get("final", {})
        summary: dict[str, Any] = {
            "test_acc": test["acc"],
            "test_loss": test["loss"],
            "val_acc": val["acc"],
            "params": count_params(child, exclude=("auxiliary",)),
            "flops": count_flops(model, example),
            "genotype": genotype,
            "selection": selection_to_json(selection),
            "final_lr": hyper.get("lr"),
            "final_wd": hyper.get("wd"),
            "policy": _top_level(reports.get("policy", {})),
            "relax": reports.get("relax", {}),
            "hpo": reports.get("hpo", {}),
            "bn_recalibration": recalibration,
            "nonfinite_skipped": int(stage.step_fn.nonfinite_total),
            "stopped_early": reports.get("search_history", {}).get("stopped_early"),
            "steps": state.global_step,
            "stage_wall_s": dict(state.stage_walls),
            "stage_train_s": dict(state.stage_train_s),
            "budget_used": self._budget_used(state),
            "arch": _arch_summary(reports.get("search_history", {}), selection),
            "wall_s": state.elapsed(),
            "components": {field: config.component(field).name for field in CONFIG_FIELDS},
            "device": str(self.builder.device),
            "performance": self._performance(reports),
        }
        for name in ("retrain", "finetune"):
            if f"{name}_hpo" in reports:
                summary[f"{name}_final"] = reports[f"{name}_hpo"].get("final", {})
        save_model(model, self.run.model, space_config=config.space.model_dump(mode="json"),
                   data_spec=self.builder.bundle.spec, selection=selection,
                   extra={"test_acc": test["acc"], "eval_batch_size": config.train.eval_batch_size})
        self.run.write_json(self.run.genotype, genotype)
        state.metrics.save(self.run.metrics)
        if config.output.plots:
            from dha_core.plots import write_plots

            write_plots(self.run.plots, state.metrics, reports, space, selection)
        self.run.write_json(self.run.summary, summary)
        return SearchResult(model=model, genotype=genotype, summary=summary, selection=selection,
                            run_dir=self.run.path)


def _arch_summary(history: dict[str, Any], selection: Selection) -> dict[str, Any]:
    """How far the architecture moved: the choice groups whose selected (edge, op) pairs
    differ between the start of the search and its end, and when it was fixed."""
    initial = history.get("initial_selection")
    changed: list[str] = []
    if initial is not None:
        start = selection_from_json(initial)
        changed = [g for g, picks in selection.items()
                   if {(p.edge, p.op) for p in picks} != {(p.edge, p.op) for p in start.get(g, [])}]
    return {
        "groups": len(selection),
        "changed_groups": len(changed),
        "changed": changed,
        "initial_selection": initial,
        "finalized": history.get("finalized"),
    }


def _top_level(report: dict[str, Any]) -> dict[str, Any]:
    """Drops bulky matrices from the policy report for the summary (plots keep them)."""
    return {k: v for k, v in report.items() if not (isinstance(v, list) and v and isinstance(v[0], list)
                                                     and len(v) > 4 and not isinstance(v[0][0], str))}
