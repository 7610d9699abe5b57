"""``space=mobilenet``: ProxylessNAS-style MBConv space with derivation that keeps weights.

Modules:
    config: :class:`MobileNetSpaceConfig`.
    blocks: conv-BN-ReLU6, MBConv, the fixed inverted residual.
    layout: the block plan (channels, strides, candidates per block).
    supernet: :class:`MobileNetSupernet`.
    child: :class:`MobileNetChild`.
    space: :class:`MobileNetSpace`.
"""

from __future__ import annotations

from typing import Any

from dha_core.hookspecs import hookimpl
from dha_core.interfaces import DataSpec
from dha_plugins.spaces.mobilenet.blocks import op_name
from dha_plugins.spaces.mobilenet.child import MobileNetChild
from dha_plugins.spaces.mobilenet.config import MobileNetSpaceConfig
from dha_plugins.spaces.mobilenet.space import MobileNetSpace
from dha_plugins.spaces.mobilenet.supernet import MobileNetSupernet

__all__ = [
    "MobileNetChild",
    "MobileNetSpace",
    "MobileNetSpaceConfig",
    "MobileNetSupernet",
    "create_mobilenet_space",
    "op_name",
]


def create_mobilenet_space(config: MobileNetSpaceConfig, data_spec: DataSpec) -> MobileNetSpace:
    """ProxylessNAS-style MobileNet space: MBConv k{3,5,7} x e{3,6} plus zero per block."""
    return MobileNetSpace(config, data_spec)


@hookimpl
def dha_register(registry: Any) -> None:
    """Registers ``space=mobilenet``."""
    registry.add("space", "mobilenet", create_mobilenet_space, config=MobileNetSpaceConfig)
