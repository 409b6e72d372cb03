"""Model registry: architectures as JSON-able data.

A model is described by a *spec*, ``{"name": "resnet56", "kwargs": {"shortcut": "A"}}``. The spec
is plain data, so params.yaml, DVC stages and checkpoints can all store it, and
:func:`build_model` turns it back into an ``nn.Module``. Every built model carries the spec it was
built from as ``model.arch_spec``, with all builder defaults filled in, so a checkpoint records the
full architecture even if a default changes later.

Adding a model::

    from prunerep.models import register_model

    @register_model("my_net")
    def my_net(*, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return MyNet(num_classes, in_channels)

Any torchvision builder is reachable without registration as ``"torchvision:<fn_name>"`` (see
:mod:`prunerep.models.imagenet`).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

__all__ = [
    "TORCHVISION_PREFIX",
    "build_model",
    "get_model",
    "list_models",
    "register_model",
    "unregister_model",
]

TORCHVISION_PREFIX = "torchvision:"

ModelBuilder = Callable[..., nn.Module]

_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering a model builder under ``name``.

    The builder takes keyword arguments only (they become ``spec["kwargs"]``) and returns an
    ``nn.Module``. Its keyword arguments should be JSON-able values.

    Args:
        name: Registry name, e.g. ``"resnet56"``. Names starting with ``"torchvision:"`` are
            reserved for the torchvision escape hatch.

    Returns:
        The decorator; it returns the builder unchanged.

    Raises:
        ValueError: If ``name`` is already registered (in a notebook, call
            :func:`unregister_model` before re-running the cell) or is reserved.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if name.startswith(TORCHVISION_PREFIX):
        raise ValueError(
            f"names starting with {TORCHVISION_PREFIX!r} are reserved for torchvision builders"
        )

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if name in _REGISTRY:
            raise ValueError(
                f"model {name!r} is already registered (by {_qualname(_REGISTRY[name])}); "
                "choose another name, or call prunerep.models.unregister_model(name) first "
                "(e.g. when re-running a notebook cell)"
            )
        _REGISTRY[name] = builder
        return builder

    return decorator


def unregister_model(name: str) -> None:
    """Remove ``name`` from the registry (no-op if absent); mainly for notebooks and tests."""
    _REGISTRY.pop(name, None)


def list_models() -> list[str]:
    """Sorted names of all registered models (the ``"torchvision:<fn>"`` escape hatch excluded)."""
    _load_builtin_models()
    return sorted(_REGISTRY)


def build_model(spec: Mapping[str, Any]) -> nn.Module:
    """Build a model from its spec ``{"name": ..., "kwargs": {...}}``.

    Args:
        spec: ``name`` is a registered name or ``"torchvision:<fn_name>"``; ``kwargs`` (optional,
            default ``{}``) are passed to the builder and must be JSON-able.

    Returns:
        The model (freshly initialised), with ``model.arch_spec`` set to
        ``{"name": name, "kwargs": resolved}``, where ``resolved`` holds every keyword argument of
        the builder, defaults included. ``build_model(model.arch_spec)`` rebuilds the same
        architecture.

    Raises:
        ValueError: Unknown name, malformed spec or kwargs the builder does not accept.
        TypeError: Non-JSON-able kwargs.
    """
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(
            f'a model spec is a mapping {{"name": ..., "kwargs": {{...}}}}, got {spec!r}'
        )
    extra = set(spec) - {"name", "kwargs"}
    if extra:
        raise ValueError(f"unexpected model spec keys {sorted(extra)}; allowed: name, kwargs")
    name = spec["name"]
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"spec['kwargs'] must be a mapping, got {type(kwargs).__name__}")
    kwargs = copy.deepcopy(dict(kwargs))  # the builder must not alias the caller's data
    _check_json(name, kwargs)

    builder = _lookup(name)
    resolved = _resolve_kwargs(name, builder, kwargs)
    model = builder(**copy.deepcopy(resolved))
    if not isinstance(model, nn.Module):
        raise TypeError(f"builder of {name!r} returned {type(model).__name__}, not an nn.Module")
    model.arch_spec = {"name": name, "kwargs": resolved}
    return model


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Shorthand for ``build_model({"name": name, "kwargs": kwargs})``."""
    return build_model({"name": name, "kwargs": kwargs})


# -- internals ------------------------------------------------------------------------------------


def _load_builtin_models() -> None:
    # The built-in builders register themselves when prunerep.models is imported; importing it
    # here makes `from prunerep.models.registry import build_model` work on its own too.
    importlib.import_module("prunerep.models")


def _lookup(name: Any) -> ModelBuilder:
    if isinstance(name, str) and name.startswith(TORCHVISION_PREFIX):
        from prunerep.models.imagenet import torchvision_builder

        return torchvision_builder(name[len(TORCHVISION_PREFIX) :])
    _load_builtin_models()
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    raise ValueError(
        f"unknown model {name!r}. Registered models: {', '.join(sorted(_REGISTRY))}. "
        f"Any torchvision builder is available as '{TORCHVISION_PREFIX}<fn_name>' "
        "(e.g. 'torchvision:resnet101'). To add a model, decorate a builder function with "
        "@prunerep.models.register_model('<name>') and import its module before building."
    )


def _resolve_kwargs(name: str, builder: ModelBuilder, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Bind ``kwargs`` to the builder's signature and fill in its defaults."""
    try:
        sig = inspect.signature(builder)
    except (TypeError, ValueError):  # builtins without a signature: record what was given
        return kwargs
    try:
        bound = sig.bind(**kwargs)
    except TypeError as exc:
        accepted = [
            p.name
            for p in sig.parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        raise ValueError(
            f"invalid kwargs for model {name!r}: {exc}. Accepted keyword arguments: {accepted}"
        ) from None
    bound.apply_defaults()
    resolved: dict[str, Any] = {}
    for pname, value in bound.arguments.items():
        kind = sig.parameters[pname].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            resolved.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            continue  # always empty: specs carry keyword arguments only
        else:
            resolved[pname] = value
    _check_json(name, resolved)  # defaults must be data too, or the spec cannot be stored
    return resolved


def _check_json(name: Any, kwargs: Mapping[str, Any]) -> None:
    try:
        json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"kwargs of model {name!r} must be JSON-able data (str/int/float/bool/None/list/dict) "
            f"so that the spec can be stored in checkpoints and params.yaml: {exc}"
        ) from None


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
