"""The shared interface every pruning method implements, and the method registry.

A method is a `TrainHooks` (so it can take part in the one training loop) plus three decisions:

- ``prepare``: what to attach or choose before training (gates, pruned sets, ...);
- ``phases``: the training phases before surgery (sparse training, regularisation, search);
  empty for one-shot methods;
- ``finalize``: turn the trained model into a physically smaller one, through the shared
  surgery (`prune_channels` for hard keep masks, `apply_gates` for gates).

Fine-tuning, evaluation, cost and latency are done by `prunerep.methods.run`, identically for
every method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from prunerep.engine import ArchOptimConfig, OptimConfig, TrainHooks
from prunerep.pruning.groups import ChannelGroup, ChannelGroups


@dataclass(frozen=True)
class Budget:
    """What the pruned network may cost.

    Exactly one of: ``macs_keep`` (fraction of the dense MACs to keep, e.g. 0.5),
    ``ratios`` (fraction of channels to *remove* per prunable group, chosen by a method-specific
    rule such as GReg's per-stage ratios), or ``latency_keep`` (fraction of the dense network's
    latency to keep, as the method's latency predictor sees it; methods without one refuse it).
    """

    macs_keep: float | None = None
    ratios: Mapping[str, float] | None = None
    latency_keep: float | None = None
    # After the method, round every width it pruned *down* to a multiple of this (the runner's
    # `round_pruned_widths`; a method may round with its own scores first). None: no rounding.
    round_to: int | None = None

    def __post_init__(self) -> None:
        if sum(v is not None for v in (self.macs_keep, self.ratios, self.latency_keep)) != 1:
            raise ValueError("Budget: give exactly one of macs_keep, ratios or latency_keep")
        if self.round_to is not None and (isinstance(self.round_to, bool) or not isinstance(self.round_to, int)
                                          or self.round_to < 1):
            raise ValueError(f"Budget.round_to must be a positive integer or None, got {self.round_to!r}")
        if self.macs_keep is not None and not 0 < self.macs_keep <= 1:
            raise ValueError(f"Budget.macs_keep must be in (0, 1], got {self.macs_keep}")
        if self.latency_keep is not None and not 0 < self.latency_keep <= 1:
            raise ValueError(f"Budget.latency_keep must be in (0, 1], got {self.latency_keep}")
        for gid, r in (self.ratios or {}).items():
            if not 0 <= r < 1:
                raise ValueError(f"Budget.ratios[{gid!r}] must be in [0, 1), got {r}")

    def describe(self) -> str:
        rounding = f", widths rounded down to multiples of {self.round_to}" if self.round_to else ""
        if self.macs_keep is not None:
            return f"keep {self.macs_keep:.0%} of dense MACs ({1 / self.macs_keep:.2f}x){rounding}"
        if self.latency_keep is not None:
            return f"keep {self.latency_keep:.0%} of dense latency (predicted, {1 / self.latency_keep:.2f}x){rounding}"
        return f"fixed per-group ratios ({len(self.ratios or {})} groups){rounding}"


@dataclass
class MethodContext:
    """What `prepare` gets: the model's groups, its cost model and an example input."""

    groups: ChannelGroups
    prunable: list[ChannelGroup]
    example_input: torch.Tensor
    budget: Budget
    cost_model: Any   # prunerep.pruning.soft_cost.SoftCostModel
    # Batches of the validation split, for methods that choose by validation (e.g. an allocation
    # scan); set by the runner, None elsewhere. Never the test split.
    val_loader: Any = None


class PruningMethod(TrainHooks):
    """Base class of the six papers' methods and the baselines.

    Subclasses are registered with ``@register_method(slug, hyper=HyperClass)``, set `paper` and
    override what their paper needs. `bilevel = True` asks
    the runner for held-out batches for the architecture parameters.
    """

    slug: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    bilevel: ClassVar[bool] = False
    hyper_class: ClassVar[type] = object
    # Whether the pruned network computes exactly what the trained, gated one did (gate methods
    # whose finalize folds gates); the contract test checks it for the methods that claim it.
    exact_surgery: ClassVar[bool] = False

    @classmethod
    def from_hyper(cls, hyper: Any) -> PruningMethod:
        """Build from the typed hyper-parameters (default: its fields as keyword arguments)."""
        import dataclasses

        return cls(**{f.name: getattr(hyper, f.name) for f in dataclasses.fields(hyper)})

    def prunable(self, group: ChannelGroup) -> bool:
        """Which groups this method may prune (default: all that surgery can prune)."""
        return True

    def prepare(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        """Before any training: attach gates, choose pruned sets, etc. Returns the model."""
        self.ctx = ctx
        return model

    def phases(self) -> list[tuple[str, OptimConfig]]:
        """Named training phases run with this method's hooks before `finalize`."""
        return []

    def finalize(self, model: nn.Module, ctx: MethodContext) -> nn.Module:
        """Return the physically pruned model (in place or new)."""
        raise NotImplementedError(f"{type(self).__name__} must implement finalize")

    def arch_optimizer_config(self) -> ArchOptimConfig | None:
        """Optimiser of `arch_parameters` (bi-level methods); None: the engine's default."""
        return None

    def finetune_hooks(self) -> list[TrainHooks]:
        """Hooks for the fine-tuning after `finalize` (e.g. masks keeping pruned weights at zero)."""
        return []

    def summary(self) -> dict[str, Any]:
        """Method-specific numbers for the results (e.g. stop iteration, final lambda)."""
        return {}


_METHODS: dict[str, type[PruningMethod]] = {}


def register_method(slug: str, *, hyper: type):
    """Class decorator: make the class available as `get_method(slug, hyper)`.

    `hyper` is the method's frozen hyper-parameter dataclass: its fields are the constructor's
    keyword arguments, validated once (unknown keys, wrong types) when a spec is built, and
    carried typed through the runner. A slug registered twice raises.
    """
    import dataclasses

    if not slug:
        raise ValueError("register_method: give the method's slug")
    if not dataclasses.is_dataclass(hyper):
        raise TypeError(f"register_method({slug!r}): hyper must be a dataclass, got {hyper!r}")

    def deco(cls: type[PruningMethod]) -> type[PruningMethod]:
        if slug in _METHODS and _METHODS[slug] is not cls:
            raise ValueError(f"method {slug!r} is registered twice")
        cls.slug = slug
        cls.hyper_class = hyper
        _METHODS[slug] = cls
        return cls

    return deco


def _import_all() -> None:
    """Import every module of `prunerep.methods` (each registers its methods)."""
    import importlib
    import pkgutil

    import prunerep.methods as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def list_methods() -> list[str]:
    _import_all()
    return sorted(_METHODS)


def method_module(slug: str) -> str:
    """The module that defines method `slug` (``"prunerep.methods.gdp"``)."""
    return _method_class(slug).__module__


def _method_class(slug: str) -> type[PruningMethod]:
    list_methods()
    if slug not in _METHODS:
        raise ValueError(f"unknown method {slug!r}; registered: {sorted(_METHODS)}")
    return _METHODS[slug]


def build_hyper(slug: str, value: Any = None) -> Any:
    """The typed hyper-parameters of method `slug` from a mapping (validated), an instance, or None."""
    import dataclasses

    from prunerep.config import from_dict

    hyper = _method_class(slug).hyper_class
    if value is None:
        return hyper()
    if isinstance(value, hyper):
        return value
    if dataclasses.is_dataclass(value):
        raise TypeError(f"method {slug!r}: hyper-parameters must be a {hyper.__name__}, got {type(value).__name__}")
    return from_dict(hyper, value, slug)


def get_method(slug: str, hyper: Any = None, **kwargs: Any) -> PruningMethod:
    """A method instance by slug, from its hyper dataclass or keyword arguments (its fields)."""
    if hyper is not None and kwargs:
        raise TypeError("get_method: give the hyper-parameters as one dataclass or as keywords, not both")
    return _method_class(slug).from_hyper(build_hyper(slug, hyper if hyper is not None else kwargs or None))


MaskFn = Callable[[ChannelGroup], torch.Tensor]
