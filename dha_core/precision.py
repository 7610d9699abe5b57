"""Throughput settings of a run: mixed precision, memory format, threads and compile.

The orchestrator resolves ``train.precision``, ``train.channels_last``, ``train.threads``
and ``train.compile`` once per run into a frozen :class:`RunPerformance` and applies it
in a few places (:class:`~dha_core.joint_step.JointStep` and
:class:`~dha_core.searcher.Searcher`). Plugins never see it.

What runs in reduced precision: only the network's forward (and hence its backward) in
the training step and in the held-out hypergradient forward, through ``torch.autocast``.
What stays in full precision whatever the setting:

* augmentation: images stay float32 in ``[0, 1]``; the policy runs before autocast;
* the relaxation's mixing weights (computed before autocast is entered), its parameters
  and its steps, FISTA, and a bilevel relaxation's validation loss;
* the losses: logits are cast to float32 before the cross-entropy;
* the weights, their gradients and the optimizer state (autocast casts copies; the
  parameters stay float32), so the hypergradient's dot products see float32 tensors
  and sum them in float64;
* batch-norm running statistics (float32 buffers) and the folding of ``alpha`` into them.

Resolution of ``auto`` (see :meth:`RunPerformance.resolve`):

* ``precision: auto``: ``bf16`` on a CUDA device that supports it, ``fp32`` otherwise
  (CPU, MPS, older GPUs). bf16 on CPU is not the default: a bf16 search's accuracy has
  not been shown to match fp32's on this library's benchmarks, and the fp32 default
  keeps earlier results reproducible bit for bit.
* ``channels_last: auto``: true on CUDA under bf16/fp16 (tensor-core convolutions
  prefer NHWC); on CPU, in a stage bounded by a time budget, whichever format runs the
  stage's network faster, timed when the stage is built (:mod:`dha_core.memory_format`);
  false otherwise.

Any setting other than fp32/contiguous is first checked on the device
(:func:`conv_gradient_check`): the convolutions the built-in spaces use (dense, depthwise,
dilated, strided) are run forward and backward in the requested precision and memory
format and compared with float64. A combination that gives wrong results is refused
(explicit setting: one-line error) or avoided (``auto``). This is not hypothetical: with
torch 2.14 on a CPU with avx512_bf16, bf16 + channels_last gives depthwise *dilated*
convolutions (DARTS' ``dil_conv``) weight gradients that are off by orders of magnitude
while everything else looks normal.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from dha_core.errors import UserInputError

if TYPE_CHECKING:
    from dha_core.config import TrainConfig

__all__ = ["RunPerformance", "ScaledParams", "thread_scope", "conv_gradient_check", "PRECISIONS", "COMPILE_BACKEND"]

log = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}

COMPILE_BACKEND = "inductor"
"""``torch.compile`` backend used for ``train.compile: true`` (tests swap in a cheaper one)."""


@dataclass(frozen=True)
class RunPerformance:
    """The resolved throughput settings of a run on one device.

    Attributes:
        device: The training device.
        precision: ``fp32``, ``bf16`` or ``fp16`` (``auto`` already resolved).
        channels_last: Whether the network and its input batches use ``channels_last``.
        compile: Whether the training forward goes through ``torch.compile``.
        threads: Intra-op threads set at fit start, or None for torch's choice.
        requested: The configured values, as given (for the log and the summary).
        measure_memory_format: ``channels_last: auto`` on CPU: a stage with a time budget
            times both formats and takes the faster (:meth:`with_channels_last`).
    """

    device: torch.device
    precision: Precision = "fp32"
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None
    requested: tuple[tuple[str, Any], ...] = ()
    measure_memory_format: bool = False

    @classmethod
    def resolve(cls, train: TrainConfig, device: torch.device) -> RunPerformance:
        """Resolves a ``TrainConfig``'s throughput fields for ``device``.

        Args:
            train: The validated ``train`` section (``precision``, ``channels_last``,
                ``threads``, ``compile``).
            device: The training device.

        Returns:
            The resolved settings.

        Raises:
            UserInputError: A precision the device cannot run (bf16 on a CUDA device
                without bf16 support, fp16 on MPS), as one line.
        """
        requested_precision = train.precision
        requested_cl = train.channels_last
        threads = train.threads
        compile_ = bool(train.compile)
        precision = _resolve_precision(requested_precision, device)
        if requested_cl == "auto":
            channels_last = device.type == "cuda" and precision != "fp32"
        else:
            channels_last = bool(requested_cl)
        if channels_last and (failure := conv_gradient_check(device, precision, True)) is not None:
            if requested_cl != "auto":
                raise UserInputError(f"train.channels_last: {precision} + channels_last computes wrong convolution "
                                     f"results on {device} with torch {torch.__version__} ({failure}); "
                                     "use channels_last: false")
            log.warning("%s + channels_last is wrong on %s (%s): channels_last stays off", precision, device, failure)
            channels_last = False
        if precision != "fp32" and (failure := conv_gradient_check(device, precision, False)) is not None:
            if requested_precision != "auto":
                raise UserInputError(f"train.precision: {precision} computes wrong convolution results on {device} "
                                     f"with torch {torch.__version__} ({failure}); use fp32")
            log.warning("%s is wrong on %s (%s): using fp32", precision, device, failure)
            precision = "fp32"
        requested = (("precision", requested_precision), ("channels_last", requested_cl), ("threads", threads),
                     ("compile", compile_))
        measure = requested_cl == "auto" and device.type == "cpu"
        return cls(device, precision, channels_last, compile_, threads, requested, measure)

    def with_channels_last(self, channels_last: bool) -> RunPerformance:
        """These settings with ``channels_last`` set (measured for one stage), where the
        device computes convolutions correctly in that format; else unchanged."""
        if channels_last and conv_gradient_check(self.device, self.precision, True) is not None:
            return replace(self, measure_memory_format=False)
        return replace(self, channels_last=channels_last, measure_memory_format=False)

    # ------------------------------------------------------------------ autocast
    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for full precision."""
        return _DTYPES.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which the network's forward runs in the configured precision.

        Under ``fp32`` it is a null context, so that the default path runs exactly the
        operations it ran before this setting existed.
        """
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A fresh ``GradScaler`` under ``fp16``, else None (bf16 needs no loss scaling)."""
        if self.precision != "fp16":
            return None
        return torch.amp.GradScaler(self.device.type)

    # ------------------------------------------------------------- memory format
    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def prepare_module(self, module: nn.Module) -> nn.Module:
        """Converts ``module``'s 4-d parameters and buffers to ``channels_last`` (in place).

        The parameter objects are kept (only their storage changes), so optimizers and
        state dicts built on them stay valid. A no-op unless ``channels_last`` is on.
        """
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def restore_module(self, module: nn.Module) -> nn.Module:
        """Converts ``module`` back to the default (contiguous) memory format, in place.

        The finished model is evaluated, saved and exported in the format that
        :func:`~dha_core.model_io.load_model` rebuilds, so that its logits match a reload.
        """
        # Unconditional: a stage may have measured its way to channels_last while the run's
        # default is contiguous (channels_last: auto on CPU).
        module.to(memory_format=torch.contiguous_format)
        return module

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Returns a 4-d batch in the network's memory format (unchanged when off)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    # ------------------------------------------------------------------- compile
    def compile_module(self, module: nn.Module) -> nn.Module:
        """``torch.compile(module)`` when ``compile`` is on, else ``module`` itself.

        The compiled module shares ``module``'s parameters. Dynamo guards on the Python
        values the forward reads (the ISTA support as ``(edge, op)`` ints, ``training``,
        the drop-path probability), so a change of any of them recompiles instead of
        reusing a stale graph.
        """
        if not self.compile:
            return module
        return torch.compile(module, backend=COMPILE_BACKEND)  # type: ignore[return-value]

    # -------------------------------------------------------------------- report
    def describe(self) -> dict[str, Any]:
        """The resolved settings, for the log and ``summary.json``."""
        return {
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": self.compile,
            "threads": self.threads if self.threads is not None else torch.get_num_threads(),
        }


def _resolve_precision(requested: str, device: torch.device) -> Precision:
    if requested == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16"
        return "fp32"
    if requested == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
            raise UserInputError(f"train.precision: bf16 is not supported on {device}; use fp16 or fp32")
        if device.type == "cpu" and not _cpu_has_native_bf16():
            log.warning("train.precision: bf16 on a CPU without native bf16 instructions is emulated and slow")
        return "bf16"
    if requested == "fp16":
        if device.type not in ("cuda", "cpu"):
            raise UserInputError(f"train.precision: fp16 is supported on cuda and cpu, not on {device.type}")
        if device.type == "cpu":
            log.warning("train.precision: fp16 on CPU is meant for testing (slow); bf16 needs no loss scaling")
        return "fp16"
    if requested == "fp32":
        return "fp32"
    raise UserInputError(f"train.precision: expected one of {', '.join(PRECISIONS)}, got {requested!r}")


# (kernel, dilation, depthwise, stride): the convolution kinds of the built-in spaces.
_CONV_CASES: tuple[tuple[int, int, bool, int], ...] = (
    (3, 1, True, 1), (3, 2, True, 1), (5, 1, True, 1), (5, 2, True, 1), (3, 1, True, 2), (1, 1, False, 1),
    (3, 1, False, 1),
)
CONV_CHECK_TOLERANCE = 0.05
"""Max error (relative to the largest reference entry) of the conv check; bf16 gives ~5e-3."""


@functools.lru_cache(maxsize=None)
def conv_gradient_check(device: torch.device, precision: str, channels_last: bool) -> str | None:
    """Checks convolutions forward and backward in a precision and memory format on ``device``.

    Each case in ``_CONV_CASES`` runs on a small batch (2 x 8 channels x 32 x 32, the size
    at which the known bf16 + channels_last bug shows) under the autocast and memory
    format a run would use; its output and its input and weight gradients are compared
    with float64 on the same device. Takes about 10 ms on CPU; cached per combination.

    Args:
        device: The training device.
        precision: ``fp32``, ``bf16`` or ``fp16``.
        channels_last: Whether the input and weights are ``channels_last``.

    Returns:
        None when every result is within :data:`CONV_CHECK_TOLERANCE`, else a short
        description of the first failing case.
    """
    dtype = _DTYPES.get(precision)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    n, c, size = 2, 8, 32
    for k, dilation, depthwise, stride in _CONV_CASES:
        groups = c if depthwise else 1
        w = torch.randn(c, c // groups, k, k, generator=gen)
        x = torch.randn(n, c, size, size, generator=gen)
        pad = dilation * (k // 2)
        wl = w.to(device).contiguous(memory_format=fmt).detach().requires_grad_()
        xl = x.to(device).contiguous(memory_format=fmt).detach().requires_grad_()
        with torch.enable_grad():
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                y = F.conv2d(xl, wl, None, stride, pad, dilation, groups)
            gy = torch.randn(y.shape, generator=gen).to(device)
            (y.float() * gy).sum().backward()
            wr = w.to(device, torch.float64).requires_grad_()
            xr = x.to(device, torch.float64).requires_grad_()
            yr = F.conv2d(xr, wr, None, stride, pad, dilation, groups)
            (yr * gy.double()).sum().backward()
        assert xl.grad is not None and wl.grad is not None and xr.grad is not None and wr.grad is not None
        for what, got, ref in (("output", y, yr), ("input gradient", xl.grad, xr.grad),
                               ("weight gradient", wl.grad, wr.grad)):
            err = float((got.detach().double() - ref.detach()).abs().max() / ref.detach().abs().max())
            if not err <= CONV_CHECK_TOLERANCE:
                kind = f"{'depthwise' if depthwise else 'dense'} {k}x{k} conv, dilation {dilation}, stride {stride}"
                return f"{kind}: {what} off by {err:.1e} relative"
    return None


def _cpu_has_native_bf16() -> bool:
    """Whether oneDNN reports native bf16 support (avx512_bf16 or AMX) on this CPU."""
    check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


@contextlib.contextmanager
def thread_scope(threads: int | None) -> Iterator[None]:
    """Sets torch's intra-op threads for the duration of a fit, then restores them.

    Args:
        threads: Thread count, or None to leave torch's choice (all cores by default).
    """
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ScaledParams:
    """The parameters one backward writes gradients into, as ``GradScaler.unscale_`` expects.

    ``GradScaler`` unscales through an optimizer's ``param_groups``; the joint step's
    gradients belong to the hyper-optimizer's weights *and* to the relaxation's
    parameters (single-level architecture steps use the same backward), so this stand-in
    lists both.

    Args:
        params: Every parameter the scaled backward may reach.
    """

    def __init__(self, params: Sequence[torch.Tensor]) -> None:
        self.param_groups = [{"params": list(params)}]
