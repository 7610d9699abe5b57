"""``space=tiny``: a two-node toy cell for tests and examples.

It has real choice points (so every relaxation can drive it) but costs almost nothing:
stem conv -> node0 <- {input}, node1 <- {input, node0} -> pooled linear head.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from dha_core.config_base import ComponentConfig
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import DataSpec, SearchSpace, Supernet
from dha_core.types import ChoiceGroup, MixingWeights, Selection

TINY_OPS: tuple[str, ...] = ("none", "skip_connect", "conv_3x3", "avg_pool_3x3")


class TinySpaceConfig(ComponentConfig):
    """Config of the toy space."""

    channels: int = Field(8, ge=1)
    ops: tuple[str, ...] = TINY_OPS
    keep: int = Field(1, ge=1, le=2, description="(edge, op) pairs kept per node.")
    norm: Literal["batch", "none"] = Field(
        "batch",
        description="Normalisation after the stem and conv ops. 'none' makes every sample's loss independent "
        "of the rest of its batch (e.g. to compare a distributed run with a single process exactly).",
    )


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


def _make_op(name: str, channels: int, norm: str = "batch") -> nn.Module:
    if name == "none":
        return _Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "conv_3x3":
        return nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False), _norm(norm, channels))
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown tiny op {name!r}; expected one of {', '.join(TINY_OPS)}")


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class _Scaled(nn.Module):
    def __init__(self, op: nn.Module, weight: float) -> None:
        super().__init__()
        self.op = op
        self.register_buffer("weight", torch.tensor(float(weight)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x) * self.weight


def _key(edge: int, op: int) -> str:
    return f"e{edge}_o{op}"


class TinySupernet(Supernet):
    def __init__(self, space: TinySpace) -> None:
        super().__init__()
        c = space.config.channels
        self.groups = space.choice_groups()
        norm = space.config.norm
        self.stem = nn.Sequential(nn.Conv2d(space.data_spec.channels, c, 3, padding=1, bias=False), _norm(norm, c))
        self.candidates = nn.ModuleDict(
            {
                g.name.replace("/", "_"): nn.ModuleDict(
                    {_key(e, o): _make_op(op, c, norm) for e in range(len(g.edges)) for o, op in enumerate(g.ops)}
                )
                for g in self.groups
            }
        )
        self.head = nn.Linear(c, space.data_spec.num_classes)

    def forward(self, x: torch.Tensor, weights: MixingWeights | None = None) -> torch.Tensor:
        states = [self.stem(x)]
        for g in self.groups:
            ops = self.candidates[g.name.replace("/", "_")]
            pairs = None if weights is None else weights.active_pairs(g.name)
            if pairs is None:
                pairs = [(e, o) for e in range(len(g.edges)) for o in range(len(g.ops))]
            w = None if weights is None else weights.values[g.name]
            out = torch.zeros_like(states[0])
            for e, o in pairs:
                y = ops[_key(e, o)](states[e])
                out = out + (y if w is None else w[e, o] * y)
            states.append(out)
        return self.head(states[-1].mean((2, 3)))


class TinyChild(nn.Module):
    def __init__(self, space: TinySpace, selection: Selection) -> None:
        super().__init__()
        c = space.config.channels
        self.groups = space.choice_groups()
        norm = space.config.norm
        self.stem = nn.Sequential(nn.Conv2d(space.data_spec.channels, c, 3, padding=1, bias=False), _norm(norm, c))
        self.nodes = nn.ModuleDict()
        for g in self.groups:
            self.nodes[g.name.replace("/", "_")] = nn.ModuleDict(
                {_key(s.edge, s.op): _Scaled(_make_op(g.ops[s.op], c, norm), s.weight) for s in selection[g.name]}
            )
        self.head = nn.Linear(c, space.data_spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [self.stem(x)]
        for g in self.groups:
            out = torch.zeros_like(states[0])
            for key, op in self.nodes[g.name.replace("/", "_")].items():
                edge = int(key[1 : key.index("_")])
                out = out + op(states[edge])
            states.append(out)
        return self.head(states[-1].mean((2, 3)))


class TinySpace(SearchSpace):
    """A toy two-node cell: real choice points, negligible cost."""

    name = "tiny"

    def __init__(self, config: TinySpaceConfig, data_spec: DataSpec) -> None:
        self.config = config
        self.data_spec = data_spec

    def choice_groups(self) -> list[ChoiceGroup]:
        ops = tuple(self.config.ops)
        none = "none" if "none" in ops else None
        return [
            ChoiceGroup("cell/node0", ("cell/node0/in0",), ops, keep=1, none_op=none),
            ChoiceGroup("cell/node1", ("cell/node1/in0", "cell/node1/node0"), ops, keep=self.config.keep, none_op=none),
        ]

    def build_supernet(self) -> TinySupernet:
        return TinySupernet(self)

    def build_child(self, selection: Selection) -> TinyChild:
        return TinyChild(self, selection)

    def derive(self, supernet: Supernet, selection: Selection) -> TinyChild:
        child = self.build_child(selection)
        assert isinstance(supernet, TinySupernet)
        child.stem.load_state_dict(supernet.stem.state_dict())
        child.head.load_state_dict(supernet.head.state_dict())
        for g in self.groups_by_name().values():
            key = g.name.replace("/", "_")
            for s in selection[g.name]:
                child.nodes[key][_key(s.edge, s.op)].op.load_state_dict(
                    supernet.candidates[key][_key(s.edge, s.op)].state_dict()
                )
        return child

    def groups_by_name(self) -> dict[str, ChoiceGroup]:
        return {g.name: g for g in self.choice_groups()}


def create_tiny_space(config: TinySpaceConfig, data_spec: DataSpec) -> TinySpace:
    """Toy two-node cell for tests and examples."""
    return TinySpace(config, data_spec)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("space", "tiny", create_tiny_space, config=TinySpaceConfig)
