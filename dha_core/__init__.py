"""dha: end-to-end joint search of data augmentation, hyper-parameters and architecture."""

from dha_core.errors import DHAError, NonFiniteError, UserInputError
from dha_core.registry import create, get_registry, list_components

__version__ = "0.1.0"

__all__ = [
    "DHAError",
    "NonFiniteError",
    "UserInputError",
    "build",
    "create",
    "get_registry",
    "list_components",
    "load_model",
    "__version__",
]


def __getattr__(name: str):  # lazy: keep `import dha_core` light for plugin modules
    if name == "build":
        from dha_core.searcher import build

        return build
    if name == "load_model":
        from dha_core.model_io import load_model

        return load_model
    raise AttributeError(name)
