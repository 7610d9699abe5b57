"""Component registry filled by pluggy plugins from the ``dha`` entry-point group.

Example:
    >>> from dha_core import list_components
    >>> "synthetic" in list_components("dataset")["dataset"]
    True
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pluggy
from pydantic import ConfigDict, create_model

from dha_core import hookspecs
from dha_core.config_base import ComponentConfig
from dha_core.errors import UserInputError
from dha_core.kinds import KINDS
from dha_core.kinds import kind as kind_named

__all__ = [
    "KINDS",
    "Component",
    "DuplicateComponentError",
    "Registry",
    "get_registry",
    "reset_registry",
    "list_components",
    "create",
]

log = logging.getLogger(__name__)

DISABLED_ENV = "DHA_DISABLED_PLUGINS"


class DuplicateComponentError(RuntimeError):
    """Two plugins registered the same (kind, name)."""


@dataclass(frozen=True)
class Component:
    """A registered component.

    Attributes:
        kind: One of :data:`KINDS`.
        name: The name users put in configs.
        factory: ``factory(config, **context)`` builds the component.
        config: The pydantic model of its config, with a ``name`` literal field.
        provider: The plugin (entry-point name) that registered it.
        description: First line of the factory's docstring.
        accepts: The context keys the factory declares, or None when it takes
            ``**kwargs`` (then it receives every key of its kind's context).
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    config: type[ComponentConfig]
    provider: str
    description: str = ""
    accepts: frozenset[str] | None = None

    def create(self, config: ComponentConfig, **context: Any) -> Any:
        """Builds the component from a validated config.

        Args:
            config: An instance of :attr:`config`.
            **context: Keys of the kind's context (:attr:`dha_core.kinds.Kind.context`);
                the factory receives those it declares.

        Raises:
            TypeError: A context key the kind does not have (a misspelling is not swallowed).
        """
        allowed = kind_named(self.kind).context  # type: ignore[union-attr]  # a registered kind exists
        unknown = sorted(set(context) - set(allowed))
        if unknown:
            raise TypeError(f"{self.kind} {self.name!r}: unknown context {', '.join(unknown)}; "
                            f"a {self.kind} takes {', '.join(allowed) or 'no context'}")
        if self.accepts is not None:
            context = {k: v for k, v in context.items() if k in self.accepts}
        return self.factory(config, **context)


def _declared_context(kind: str, name: str, factory: Callable[..., Any]) -> frozenset[str] | None:
    """The context keys ``factory`` declares after its config parameter (None: ``**kwargs``).

    Raises:
        ValueError: It declares a key its kind does not provide.
    """
    params = list(inspect.signature(factory).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    declared = frozenset(p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL)
    allowed = kind_named(kind).context  # type: ignore[union-attr]
    unknown = sorted(declared - set(allowed))
    if unknown:
        raise ValueError(f"{kind} {name!r}: the factory declares {', '.join(unknown)}, which a {kind} is not "
                         f"given; a {kind} factory may take {', '.join(allowed) or 'only its config'}")
    return declared


class Registry:
    """Holds the components of every kind. Plugins receive it in ``dha_register``."""

    def __init__(self) -> None:
        self._components: dict[str, dict[str, Component]] = {k: {} for k in KINDS}
        self._current_provider = "<direct>"
        self.failed_plugins: dict[str, str] = {}
        self.blocked_plugins: list[str] = []

    def add(
        self,
        kind: str,
        name: str,
        factory: Callable[..., Any],
        config: type[ComponentConfig] | None = None,
    ) -> None:
        """Registers ``factory`` as component ``name`` of ``kind``.

        Args:
            kind: One of :data:`~dha_core.kinds.KINDS`.
            name: The name users select in configs; unique within the kind.
            factory: Called as ``factory(config, **context)``. After the config it declares
                the context keys it uses (a subset of the kind's
                :attr:`~dha_core.kinds.Kind.context`), e.g. ``(config, data_spec)``.
            config: A pydantic model (``extra="forbid"``) of the component's fields. Its
                float fields reject ``inf``/``nan`` unless the model or field opts in
                (``allow_inf_nan=True``).

        Raises:
            ValueError: Unknown kind, or a factory that declares context its kind lacks.
            DuplicateComponentError: The name is already taken; names both providers.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}; expected one of {', '.join(KINDS)}")
        existing = self._components[kind].get(name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered twice: by plugin {existing.provider!r} "
                f"and by plugin {self._current_provider!r}"
            )
        base = config or ComponentConfig
        if "name" in base.model_fields:
            raise ValueError(f"{kind} {name!r}: the config model must not define 'name' (the registry adds it)")
        if "allow_inf_nan" not in base.model_config:
            # A config not derived from ComponentConfig still rejects inf/nan floats, unless it opts in.
            base = type(base.__name__, (base,), {"__module__": base.__module__,
                                                 "model_config": ConfigDict(allow_inf_nan=False)})
        model = create_model(
            f"{base.__name__}_{kind}_{name}".replace("-", "_"),
            __base__=base,
            name=(Literal[name], name),  # type: ignore[valid-type]
        )
        doc = (factory.__doc__ or "").strip().splitlines()
        self._components[kind][name] = Component(
            kind, name, factory, model, self._current_provider, doc[0] if doc else "",
            _declared_context(kind, name, factory),
        )

    def get(self, kind: str, name: str) -> Component:
        """Returns a component or raises :class:`UserInputError` listing the available ones."""
        if kind not in KINDS:
            raise UserInputError(f"unknown component kind {kind!r}; expected one of {', '.join(KINDS)}")
        try:
            return self._components[kind][name]
        except KeyError:
            available = ", ".join(sorted(self._components[kind])) or "(none)"
            raise UserInputError(f"{kind}: unknown {kind} {name!r}; available: {available}") from None

    def names(self, kind: str) -> list[str]:
        return sorted(self._components[kind])

    def components(self, kind: str) -> list[Component]:
        return [self._components[kind][n] for n in self.names(kind)]

    def create(self, kind: str, config: Any, **context: Any) -> Any:
        """Builds the component selected by ``config.name`` (a validated config)."""
        return self.get(kind, config.name).create(config, **context)


def _blocked_from_env() -> list[str]:
    raw = os.environ.get(DISABLED_ENV, "")
    return [n.strip() for n in raw.split(",") if n.strip()]


def _load_plugins(pm: pluggy.PluginManager, blocked: Iterable[str]) -> dict[str, str]:
    """Loads every ``dha`` entry point, one at a time, so one broken plugin cannot hide the others."""
    from importlib.metadata import entry_points

    failed: dict[str, str] = {}
    for name in blocked:
        pm.set_blocked(name)
    for ep in sorted(entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure becomes a warning
            failed[ep.name] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"dha plugin {ep.name!r} ({ep.value}) failed to import and is skipped: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
            continue
        pm.register(plugin, name=ep.name)
    return failed


def _build_registry() -> Registry:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    registry.blocked_plugins = _blocked_from_env()
    registry.failed_plugins = _load_plugins(pm, registry.blocked_plugins)
    for impl in pm.hook.dha_register.get_hookimpls():
        registry._current_provider = impl.plugin_name
        try:
            impl.function(registry=registry)
        except DuplicateComponentError:
            raise
        except Exception as exc:  # noqa: BLE001
            registry.failed_plugins[impl.plugin_name] = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"dha plugin {impl.plugin_name!r} failed while registering and is skipped: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
    registry._current_provider = "<direct>"
    return registry


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, discovered on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _build_registry()
    return _REGISTRY


def reset_registry() -> None:
    """Forgets the discovered registry (after installing a plugin or changing the env)."""
    global _REGISTRY
    _REGISTRY = None
    from dha_core import config as _config

    _config.run_config_model.cache_clear()


def list_components(kind: str | None = None) -> dict[str, list[str]]:
    """Lists registered component names.

    Args:
        kind: One kind, or None for all.

    Returns:
        ``{kind: [names...]}``.
    """
    registry = get_registry()
    kinds = KINDS if kind is None else (kind,)
    for k in kinds:
        if k not in KINDS:
            raise UserInputError(f"unknown component kind {k!r}; expected one of {', '.join(KINDS)}")
    return {k: registry.names(k) for k in kinds}


def create(kind: str, name: str, context: Mapping[str, Any] | None = None, **overrides: Any) -> Any:
    """Creates one component by name in one call, validating its config fields.

    Args:
        kind: The kind, by registry name or config section (``dataset`` or ``data``).
        name: The component's name.
        context: The kind's context (:attr:`dha_core.kinds.Kind.context`), e.g.
            ``{"data_spec": spec}`` for a space or a policy.
        **overrides: Config fields; the rest take their defaults.

    Returns:
        The component.

    Raises:
        UserInputError: Unknown kind or name, or an invalid or unknown field (one line).
        TypeError: A context key the kind does not have.

    Example:
        >>> import dha_core
        >>> data = dha_core.create("dataset", "synthetic", num_train=32, image_size=8)
        >>> len(data.split("train")) + len(data.split("val"))
        32
    """
    from pydantic import ValidationError

    from dha_core.config import format_validation_error

    found = kind_named(kind)
    if found is None:
        raise UserInputError(f"unknown component kind {kind!r}; expected one of {', '.join(KINDS)}")
    component = get_registry().get(found.name, name)
    try:
        config = component.config(**overrides)
    except ValidationError as exc:
        message = format_validation_error(exc).removeprefix("invalid config: ")
        raise UserInputError(f"{found.name} {name!r}: {message}") from None
    return component.create(config, **dict(context or {}))
