"""Prune your own network with any method of this project, in one call.

    import prunerep

    pruned, record = prunerep.prune(model, method="gdp", macs=0.5, train=train_loader,
                                    val=val_loader, finetune={"epochs": 10, "lr": 0.01})

`prune` takes what a researcher has: any ``nn.Module`` the engine can trace, plain torch
``DataLoader`` s (or ``(inputs, targets)`` tensors, or a ``Dataset``) for the training and the
held-out validation data, and returns the **physically pruned** network and a `PruneRecord` of
what happened (MACs and params before and after, counted with the project's one counter; the
kept width of every channel group and every conv/linear layer; the method's resolved
hyper-parameters; accuracies; phase times).

It is the pipeline's run, not a second implementation:

* `spec_for` turns the arguments into the runner's `RunSpec` (method, budget, typed
  hyper-parameters, fine-tuning, selection rule, seed). The ``compare`` study builds every run
  of its comparison with the same function and sends them through `prunerep.runner.execute`;
* `run_on_loaders` executes a spec on the caller's loaders with exactly the steps of
  `prunerep.runner.run_pruning` (prepare -> the method's phases in the one training loop ->
  surgery -> fine-tuning -> evaluation -> exact cost, checked against the differentiable one);
  a test checks that both give the same network, weight for weight, on the same batches.

Budgets: ``macs`` is the fraction of the dense MACs to keep. Methods whose native budget is not
a MACs fraction (GReg's per-group ratios) are driven to it: the largest uniform ratio over the
groups the method prunes whose exact MACs are within the target (`native_budget`).

Bad input gets one `PruneError` naming the argument and the fix, before any training.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import torch
from torch import nn

if TYPE_CHECKING:   # the heavy layers are imported when used: `import prunerep` stays light
    from prunerep.engine import OptimConfig, RuntimeConfig
    from prunerep.methods.base import Budget
    from prunerep.runner.run import RunResult, RunSpec

__all__ = ["FINETUNE_DEFAULTS", "RATIO_BUDGET_METHODS", "PruneError", "PruneRecord", "Pruned", "native_budget",
           "prune", "run_on_loaders", "spec_for"]

#: Methods whose `prepare` takes per-group ratios (`Budget(ratios=...)`), not a MACs fraction;
#: `native_budget` drives them to a MACs target. (A class attribute on `PruningMethod` naming the
#: budgets a method accepts would make this list unnecessary.)
RATIO_BUDGET_METHODS: frozenset[str] = frozenset({"greg"})

#: What a fine-tuning given as a number of epochs uses (the engine's OptimConfig defaults are a
#: from-scratch recipe, lr 0.1; a pruned, trained network is fine-tuned gently).
FINETUNE_DEFAULTS: dict[str, Any] = {"lr": 0.01, "schedule": "cosine", "momentum": 0.9, "nesterov": True,
                                     "weight_decay": 5e-4}


class PruneError(ValueError):
    """Bad input to `prune` / `spec_for`; the message names the argument and how to fix it."""


# -- the record ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneRecord:
    """What one `prune` call did.

    Attributes:
        method: registered method slug.
        target_macs_keep: the fraction of the dense MACs asked for (``macs``).
        budget: the method's native budget as run (e.g. "keep 50% of dense MACs (2.00x)", or the
            per-group ratios that meet the target for a ratio method).
        dense_macs, dense_params, macs, params: the project's counter (MACs of conv and linear
            layers; weights, biases and norm affine parameters) at ``example_shape``.
        widths: kept channels of every channel group of the dense network (0: removed).
        dense_widths: the dense width of the same groups.
        layers: per conv/linear layer of the dense network: ``[in, out]`` channels before and
            after pruning (``[0, 0]``: the layer was removed with its branch).
        hyper: the method's resolved hyper-parameters.
        finetune: the fine-tuning recipe (None: none).
        selection: which weights are returned (``best_val``: the fine-tuning epoch with the best
            validation accuracy; ``last``; or "last (no fine-tuning)").
        val_acc_before_finetune, val_acc: validation accuracy (%) right after surgery and of the
            returned weights.
        test_acc_before_finetune, test_acc: the same on ``test`` (None when not given).
        phase_time_s: wall time of prepare, each of the method's phases, surgery, fine-tuning.
        summary: the method's own outcomes (stop step, gate statistics, surgery exactness ...).
        seed, device, example_shape: what the run used.
    """

    method: str
    target_macs_keep: float
    budget: str
    dense_macs: int
    dense_params: int
    macs: int
    params: int
    widths: dict[str, int]
    dense_widths: dict[str, int]
    layers: dict[str, dict[str, list[int]]]
    hyper: dict[str, Any]
    finetune: dict[str, Any] | None
    selection: str
    val_acc_before_finetune: float
    val_acc: float
    test_acc_before_finetune: float | None
    test_acc: float | None
    phase_time_s: dict[str, float]
    summary: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    example_shape: tuple[int, ...] = ()

    @property
    def macs_keep(self) -> float:
        """Fraction of the dense MACs the pruned network keeps (exact count)."""
        return self.macs / self.dense_macs

    @property
    def params_keep(self) -> float:
        return self.params / self.dense_params

    @property
    def pruning_time_s(self) -> float:
        """Wall time of everything before fine-tuning (prepare, the method's phases, surgery)."""
        return sum(v for k, v in self.phase_time_s.items() if k != "finetune")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "macs_keep": self.macs_keep, "params_keep": self.params_keep}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str, allow_nan=True)

    def __str__(self) -> str:
        acc = f", val acc {self.val_acc:.2f}%" if math.isfinite(self.val_acc) else ""
        test = f", test acc {self.test_acc:.2f}%" if self.test_acc is not None else ""
        return (f"{self.method}: {self.macs:,} of {self.dense_macs:,} MACs kept ({self.macs_keep:.1%}, target "
                f"{self.target_macs_keep:.1%}), {self.params:,} of {self.dense_params:,} params "
                f"({self.params_keep:.1%}){acc}{test}; selection {self.selection}")


class Pruned(NamedTuple):
    """What `prune` returns: ``pruned_model, record = prunerep.prune(...)``."""

    model: nn.Module
    record: PruneRecord


# -- checks ---------------------------------------------------------------------------------------


def check_method(method: Any) -> str:
    """`method` if it is a registered slug, else one `PruneError` listing the registered ones."""
    from prunerep.methods import list_methods

    registered = list_methods()
    if not isinstance(method, str) or method not in registered:
        raise PruneError(f"method={method!r}: unknown method; registered methods: {', '.join(registered)} "
                         "(prunerep.methods.list_methods())")
    return method


def check_macs(macs: Any) -> float:
    """`macs` as a float in (0, 1], else one `PruneError`."""
    if isinstance(macs, bool) or not isinstance(macs, int | float) or not math.isfinite(float(macs)) \
            or not 0.0 < float(macs) <= 1.0:
        raise PruneError(f"macs={macs!r}: give the fraction of the dense network's MACs to keep, a number in "
                         "(0, 1], e.g. macs=0.5 keeps half of them (2x fewer)")
    return float(macs)


def _method_class(method: str) -> type:
    from prunerep.methods.base import get_method

    return type(get_method(method))


# -- from arguments to the runner's spec -------------------------------------------------------------


def _as_optim(value: Any, name: str) -> OptimConfig | None:
    """An OptimConfig from None, an OptimConfig, a mapping of its fields, or a number of epochs."""
    from prunerep.config import ConfigError, from_dict
    from prunerep.engine import OptimConfig

    if value is None or isinstance(value, OptimConfig):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise PruneError(f"{name}={value!r}: give a positive number of epochs, a mapping of OptimConfig "
                             "fields, or None (no fine-tuning)")
        value = {**FINETUNE_DEFAULTS, "epochs": float(value)}
    if not isinstance(value, Mapping):
        raise PruneError(f"{name}: expected None, a number of epochs, an OptimConfig or a mapping of its fields "
                         f"(epochs, lr, schedule, ...), got {type(value).__name__}")
    try:
        return from_dict(OptimConfig, dict(value), name)
    except ConfigError as err:
        raise PruneError(str(err)) from None


def _with_recipe(optim: OptimConfig, *, epochs: float | None, max_steps: int | None, cap: int | None,
                 batch_size: int) -> OptimConfig:
    steps = optim.max_steps if max_steps is None else max_steps
    if cap is not None:
        steps = cap if steps is None else min(steps, cap)
    return dataclasses.replace(optim, epochs=optim.epochs if epochs is None else float(epochs), max_steps=steps,
                               batch_size=batch_size)


def phase_recipes(hyper: Any, *, epochs: float | None = None, max_steps: int | None = None,
                  cap: int | None = None, batch_size: int | None = None) -> Any:
    """`hyper` with every training phase it holds (each OptimConfig field) set to `epochs` /
    `max_steps` and capped at `cap` steps; None leaves a setting as it is.

    The length of a method's own training (GDP's gated training, DSA's and DAIS's searches,
    slimming's sparse training, W-Gates' gated training) is then set without naming the method.
    GReg's pruning phase ends when its penalty schedule does (its ``reg`` settings), whatever
    the epochs say.
    """
    from prunerep.engine import OptimConfig

    changes = {}
    for f in dataclasses.fields(hyper):
        value = getattr(hyper, f.name)
        if isinstance(value, OptimConfig):
            changes[f.name] = _with_recipe(value, epochs=epochs, max_steps=max_steps, cap=cap,
                                           batch_size=batch_size or value.batch_size)
    return dataclasses.replace(hyper, **changes) if changes else hyper


def native_budget(method: str, macs: float, model: nn.Module | None = None,
                  example_input: torch.Tensor | None = None, hyper: Any = None) -> Budget:
    """The budget `method` takes for keeping the fraction `macs` of the dense MACs.

    A MACs fraction for every method but those of `RATIO_BUDGET_METHODS`, which get the largest
    uniform removal ratio, over the groups they prune, whose exact MACs are within
    ``macs * dense MACs`` (the same rule as uniform L1 pruning; computed on `model` at
    `example_input`).
    """
    from prunerep.methods.base import Budget, get_method
    from prunerep.methods.budget import uniform_widths_for_macs
    from prunerep.pruning.soft_cost import SoftCostModel

    macs = check_macs(macs)
    if check_method(method) not in RATIO_BUDGET_METHODS:
        return Budget(macs_keep=macs)
    if model is None or example_input is None:
        raise PruneError(f"method {method!r} prunes by per-group ratios: give model= and example_input= so that the "
                         f"ratio meeting macs={macs:g} can be computed on the network")
    groups = _groups(model, example_input)
    prunable = groups.select(get_method(method, hyper).prunable)
    if not prunable:
        raise PruneError(_no_group_message(model, method, groups))
    cost = SoftCostModel.from_model(model, example_input, groups)
    try:
        _, ratio = uniform_widths_for_macs(cost, prunable, macs * float(cost.dense_macs()))
    except ValueError as err:
        raise PruneError(f"macs={macs:g}: {method} cannot reach it by pruning the {len(prunable)} groups it prunes "
                         f"({err})") from None
    return Budget(ratios={g.id: ratio for g in prunable})


def spec_for(method: str, macs: float, *, hyper: Any = None, finetune: Any = None,
             select: Literal["best_val", "last"] = "best_val", seed: int = 0, batch_size: int = 128,
             eval_batch_size: int = 512, arch_fraction: float = 0.1, epochs: float | None = None,
             phase_max_steps: int | None = None, max_steps: int | None = None,
             runtime: RuntimeConfig | None = None, model: nn.Module | None = None,
             example_input: torch.Tensor | None = None, model_key: str = "", label: str = "",
             tags: Mapping[str, Any] | None = None, round_to: int | None = None) -> RunSpec:
    """The runner's `RunSpec` for pruning with `method` to the fraction `macs` of the dense MACs.

    Args:
        method: registered method slug (`prunerep.methods.list_methods()`).
        macs: fraction of the dense MACs to keep, in (0, 1].
        hyper: the method's hyper-parameters: its dataclass, a mapping of its fields (validated:
            an unknown key is an error naming it), or None (its defaults). A ``seed`` field not
            given here is set to `seed`.
        finetune: the fine-tuning after surgery: an OptimConfig, a mapping of its fields, a
            number of epochs (with `FINETUNE_DEFAULTS`), or None (no fine-tuning).
        select: which fine-tuning weights are reported: ``best_val`` (the epoch with the best
            validation accuracy) or ``last``.
        seed: seeds Python/NumPy/torch, the data order and the method's own randomness.
        batch_size, eval_batch_size: training and evaluation batch sizes (of loaders the runner
            builds; `prune` builds its loaders from them when given tensors).
        arch_fraction: share of the training data bi-level methods (DSA, DAIS) hold out for their
            architecture parameters.
        epochs: length of the method's own training phases (None: the method's defaults).
        phase_max_steps: steps of those phases (None: from `epochs`).
        max_steps: a cap on every training phase and the fine-tuning (quick checks).
        runtime: device, channels_last, AMP, threads (default: the engine's, device ``auto``).
        model, example_input: the dense network and an input of one sample, needed by methods
            whose budget is not a MACs fraction (`native_budget`).
        model_key: the pipeline's dense-checkpoint key (``pretrain.models``), for `execute`.
        label: the row label of the run (default ``"<method>@<macs>"``).
        tags: the caller's coordinates of the run (``target`` is always set to `macs`).
        round_to: after the method, round every width it pruned down to a multiple of this
            (e.g. 8: hardware-friendly widths; `Budget.round_to`); None: no rounding.
    """
    from prunerep.config import ConfigError
    from prunerep.engine import RuntimeConfig
    from prunerep.methods.base import build_hyper
    from prunerep.runner.run import RunSpec

    method = check_method(method)
    macs = check_macs(macs)
    if select not in ("best_val", "last"):
        raise PruneError(f"select={select!r}: use 'best_val' (the fine-tuning epoch with the best validation "
                         "accuracy) or 'last'")
    for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PruneError(f"{name}={value!r}: give a positive integer")
    if not 0.0 < arch_fraction < 1.0:
        raise PruneError(f"arch_fraction={arch_fraction!r}: give the held-out share of the training data, in (0, 1)")
    for name, value in (("max_steps", max_steps), ("phase_max_steps", phase_max_steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise PruneError(f"{name}={value!r}: give a positive integer or None")
    if epochs is not None and not (isinstance(epochs, int | float) and not isinstance(epochs, bool) and epochs > 0):
        raise PruneError(f"epochs={epochs!r}: give the length of the method's training phases in epochs (> 0), "
                         "or None for its defaults")
    given = dict(hyper) if isinstance(hyper, Mapping) else None
    try:
        typed = build_hyper(method, given if given is not None else hyper)
    except ConfigError as err:
        raise PruneError(f"hyper: {err}") from None
    except TypeError as err:
        raise PruneError(f"hyper: {err}") from None
    names = {f.name for f in dataclasses.fields(typed)}
    if "seed" in names and (given is None or "seed" not in given) and not dataclasses.is_dataclass(hyper):
        typed = dataclasses.replace(typed, seed=seed)
    typed = phase_recipes(typed, epochs=epochs, max_steps=phase_max_steps, cap=max_steps, batch_size=batch_size)
    ft = _as_optim(finetune, "finetune")
    if ft is not None:
        ft = _with_recipe(ft, epochs=None, max_steps=None, cap=max_steps, batch_size=batch_size)
    budget = native_budget(method, macs, model, example_input, typed)
    try:   # Budget checks round_to (one rule); the API's error names the argument
        budget = dataclasses.replace(budget, round_to=round_to)
    except ValueError:
        raise PruneError(f"round_to={round_to!r}: give a positive integer (e.g. 8) or None") from None
    return RunSpec(method=method, budget=budget, hyper=typed, finetune=ft, select=select, seed=seed,
                   batch_size=batch_size, eval_batch_size=eval_batch_size, arch_fraction=arch_fraction,
                   runtime=runtime or RuntimeConfig(), label=label or f"{method}@{macs:g}", model=model_key,
                   tags={**dict(tags or {}), "target": macs})


# -- the caller's data as the loop's loaders ---------------------------------------------------------


class DeviceBatches:
    """The caller's batches as the training loop needs them: ``(inputs, targets)`` on `device`,
    a length, and ``set_epoch`` (forwarded to the loader or its sampler when they have one, e.g.
    a ``DistributedSampler``)."""

    def __init__(self, batches: Any, device: torch.device, *, name: str, channels_last: bool = False) -> None:
        if not isinstance(batches, Iterable):
            raise PruneError(f"{name}: expected a DataLoader, (inputs, targets) tensors or a Dataset, got "
                             f"{type(batches).__name__}")
        try:
            n = len(batches)
        except TypeError:
            raise PruneError(f"{name}: the loader has no len(); give a DataLoader over a map-style Dataset, or "
                             "tensors") from None
        if n == 0:
            raise PruneError(f"{name}: the loader yields no batches (fewer samples than one batch with "
                             "drop_last=True?)")
        self.batches, self.device, self.name, self.channels_last = batches, device, name, channels_last

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        for obj in (self.batches, getattr(self.batches, "sampler", None),
                    getattr(self.batches, "batch_sampler", None),
                    getattr(getattr(self.batches, "batch_sampler", None), "sampler", None)):
            if obj is not None and hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
                return

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.batches:
            x, y = _pair(batch, self.name)
            x = x.to(self.device, non_blocking=True)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)


def _pair(batch: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, list | tuple) and len(batch) == 2 and all(isinstance(t, torch.Tensor) for t in batch):
        return batch[0], batch[1]
    what = (f"a dict with keys {sorted(batch)}" if isinstance(batch, Mapping)
            else f"a {type(batch).__name__} of {len(batch)} items" if isinstance(batch, list | tuple)
            else type(batch).__name__)
    raise PruneError(f"{name}: every batch must be an (inputs, targets) pair of tensors, got {what}; wrap the "
                     "loader (or its collate_fn) to yield (inputs, targets)")


def _dataset(data: Any, name: str) -> torch.utils.data.Dataset | None:
    """A map-style Dataset for tensors / a Dataset; None for a loader (used as it is)."""
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    if isinstance(data, list | tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise PruneError(f"{name}: inputs and targets differ in length ({x.shape[0]} vs {y.shape[0]})")
        if x.shape[0] == 0:
            raise PruneError(f"{name}: no samples")
        return TensorDataset(x, y)
    if isinstance(data, DataLoader):
        return None
    if isinstance(data, Dataset):
        try:
            if len(data) == 0:   # type: ignore[arg-type]
                raise PruneError(f"{name}: the Dataset is empty")
        except TypeError:
            raise PruneError(f"{name}: an iterable-style Dataset; wrap it in a DataLoader") from None
        return data
    if isinstance(data, list | tuple):
        raise PruneError(f"{name}: a {type(data).__name__} of {len(data)} items; give an (inputs, targets) pair of "
                         "tensors, a Dataset or a DataLoader")
    return None


class GlobalBatchSampler:
    """Training batches under torch.distributed: each epoch's order is drawn from (seed, epoch) on
    every rank alike, and rank r takes rows ``[r*B, (r+1)*B)`` of each global batch of
    ``world*B`` (as `prunerep.data.Loader` shards), so the ranks together see every sample once
    per epoch and each step's global batch is the same whatever the number of ranks."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world: int) -> None:
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._starts())

    def _starts(self) -> range:
        from prunerep.data.loader import global_batch_starts

        return global_batch_starts(self.n, self.batch_size, (self.rank, self.world))

    def __iter__(self) -> Iterator[list[int]]:
        from prunerep.data.loader import epoch_generator

        order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch, "api"))
        for start in self._starts():
            yield order[start:start + self.batch_size].tolist()


def _loader(dataset: torch.utils.data.Dataset, batch_size: int, *, train: bool, seed: int,
            like: Any = None) -> torch.utils.data.DataLoader:
    from torch.utils.data import DataLoader

    from prunerep.engine.distributed import per_rank_batch, shard

    n = len(dataset)  # type: ignore[arg-type]
    bs = min(batch_size, n)
    extra = {}
    if like is not None:   # a split of the caller's DataLoader keeps its workers and collation
        extra = {"num_workers": like.num_workers, "collate_fn": like.collate_fn, "pin_memory": like.pin_memory}
    if train:   # under torchrun each rank takes its slice of every global batch
        rank, world = shard() or (0, 1)
        try:
            per_rank = per_rank_batch(bs)
        except ValueError as err:
            raise PruneError(str(err)) from None
        sampler = GlobalBatchSampler(n, per_rank, seed, rank, world)
        if len(sampler) == 0:
            raise PruneError(f"train: fewer samples ({n}) than one batch ({bs})")
        # the loader's own generator: creating its iterator leaves the global RNG (which methods
        # such as DSA sample from) untouched
        return DataLoader(dataset, batch_sampler=sampler, generator=torch.Generator().manual_seed(seed), **extra)
    return DataLoader(dataset, batch_size=bs, shuffle=False, drop_last=False, **extra)


def _batches(data: Any, name: str, batch_size: int, *, train: bool, seed: int, device: torch.device,
             channels_last: bool) -> DeviceBatches:
    ds = _dataset(data, name)
    source = _loader(ds, batch_size, train=train, seed=seed) if ds is not None else data
    return DeviceBatches(source, device, name=name, channels_last=channels_last)


def _split_for_arch(train: Any, fraction: float, batch_size: int, seed: int, method: str) -> tuple[Any, Any]:
    """(weights' part, held-out part) of the training data for a bi-level method, split as the
    runner splits its training split (`held_out_size` samples, a seeded permutation)."""
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, Subset

    from prunerep.runner.run import held_out_size

    ds = _dataset(train, "train")
    like = None
    if ds is None and isinstance(train, DataLoader) and train.batch_size is not None \
            and isinstance(train.sampler, RandomSampler | SequentialSampler):
        ds, like = train.dataset, train
        batch_size = train.batch_size
    if ds is None:
        raise PruneError(f"method {method!r} is bi-level: it steps its architecture parameters on training batches "
                         "held out from the weights' training. Pass arch=<batches of training data not in train>, or "
                         "give train as tensors, a Dataset or a DataLoader with a plain sampler (split here)")
    n = len(ds)
    n_arch = held_out_size(n, fraction, batch_size)   # at least one (global) batch
    if n_arch >= n:
        raise PruneError(f"train: {n} samples are too few to hold out {n_arch} for {method!r}'s architecture steps "
                         "and train the weights on the rest; give more data, a smaller batch_size or pass arch=")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    arch_ds, weights_ds = Subset(ds, order[:n_arch]), Subset(ds, order[n_arch:])
    return (_loader(weights_ds, batch_size, train=True, seed=seed, like=like),
            _loader(arch_ds, batch_size, train=True, seed=seed + 1, like=like))


def _example(example_input: Any, val: DeviceBatches, device: torch.device) -> torch.Tensor:
    if example_input is None:
        x, _ = next(iter(val))
        return x[:1].detach().clone().contiguous().to(device)
    if isinstance(example_input, torch.Tensor):
        if example_input.dim() == 0 or example_input.shape[0] != 1:
            raise PruneError(f"example_input: give one sample with its batch dimension, e.g. shape (1, C, H, W); "
                             f"got shape {tuple(example_input.shape)}")
        return example_input.detach().to(device)
    if isinstance(example_input, list | tuple) and all(isinstance(d, int) and d > 0 for d in example_input):
        shape = tuple(example_input)
        if shape[0] != 1:
            raise PruneError(f"example_input={shape}: the batch dimension must be 1, e.g. (1, C, H, W)")
        return torch.zeros(shape, device=device)
    raise PruneError(f"example_input: expected a tensor of one sample, a shape tuple or None (the first validation "
                     f"sample), got {type(example_input).__name__}")


# -- the run -------------------------------------------------------------------------------------------


def _groups(model: nn.Module, example_input: torch.Tensor) -> Any:
    from prunerep.pruning.groups import find_groups

    try:
        return find_groups(model, example_input)
    except RuntimeError as err:
        raise PruneError(f"model: the engine cannot trace {type(model).__name__} to find its channel groups: {err}. "
                         "Check that model(example_input) runs, and that example_input is one sample of your "
                         "data") from None


def _no_group_message(model: nn.Module, method: str, groups: Any) -> str:
    excluded = "; ".join(f"{k}: {v}" for k, v in list(groups.excluded.items())[:4]) or "none"
    return (f"model: {type(model).__name__} has no channel group that {method!r} can prune ({len(groups)} prunable "
            f"groups in all; excluded: {excluded}). Channel pruning needs conv or linear layers whose outputs "
            "feed other layers (a classifier's outputs are never pruned)")


def run_on_loaders(spec: RunSpec, model: nn.Module, example_input: torch.Tensor, train: Any, val: Any,
                   test: Any = None, arch: Any = None, *, checkpoint_dir: str | Path | None = None,
                   run_key: str = "") -> RunResult:
    """Run `spec` on `model` (changed in place) with the caller's loaders: the steps of
    `prunerep.runner.run_pruning`, in its order, with the same engine calls.

    The loaders yield ``(inputs, targets)`` on the model's device and have ``len`` and
    ``set_epoch`` (`DeviceBatches`, or `prunerep.data.Loader`). `arch`: held-out training
    batches for a bi-level method. `test` may be None (its accuracies are then NaN). The
    returned `RunResult` holds the pruned model on its device.
    """
    import time

    from prunerep.engine import evaluate, fit, pick_device, seed_everything
    from prunerep.engine.device import set_threads
    from prunerep.methods.base import MethodContext, get_method
    from prunerep.pruning.cost import count_cost
    from prunerep.pruning.soft_cost import SoftCostModel, group_widths, verify_soft_cost
    from prunerep.runner.run import RunResult, round_to_budget, with_rounding

    set_threads(spec.runtime.threads)
    device = pick_device(spec.runtime.device)
    seed_everything(spec.seed)
    model = model.to(device).train()
    method = get_method(spec.method, spec.hyper)
    shape = tuple(example_input.shape)
    example = example_input.to(device)
    groups = _groups(model, example)
    prunable = list(groups.select(method.prunable))
    if not prunable:
        raise PruneError(_no_group_message(model, spec.method, groups))
    cost_model = SoftCostModel.from_model(model, example, groups)
    dense_cost = count_cost(model, shape, example_input=example)
    ctx = MethodContext(groups=groups, prunable=prunable, example_input=example, budget=spec.budget,
                        cost_model=cost_model)
    if method.bilevel and arch is None:
        raise PruneError(f"method {spec.method!r} is bi-level: give arch=<held-out training batches>")
    ctx.val_loader = val
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    times: dict[str, float] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    t0 = time.perf_counter()
    model = method.prepare(model, ctx)
    times["prepare"] = time.perf_counter() - t0
    for name, optim in method.phases():
        t0 = time.perf_counter()
        res = fit(model, train, optim=optim, runtime=spec.runtime, hooks=[method], val_loader=val,
                  arch_loader=arch if method.bilevel else None, arch_optim=method.arch_optimizer_config(),
                  checkpoint_dir=ckpt / name if ckpt else None,
                  run_key=f"{run_key}/{name}", desc=f"{spec.label or spec.method} {name}")
        times[name] = time.perf_counter() - t0
        histories[name] = res.history
    t0 = time.perf_counter()
    model = method.finalize(model, ctx)
    rounded = round_to_budget(model, example, spec.budget, prunable)
    times["surgery"] = time.perf_counter() - t0

    def acc(loader: Any) -> float:
        return evaluate(model, loader)["acc"] if loader is not None else math.nan

    before_val, before_test = acc(val), acc(test)
    if spec.finetune is not None:
        t0 = time.perf_counter()
        res = fit(model, train, optim=spec.finetune, runtime=spec.runtime, hooks=method.finetune_hooks(),
                  val_loader=val, checkpoint_dir=ckpt / "finetune" if ckpt else None,
                  run_key=f"{run_key}/finetune", select=spec.select, desc=f"{spec.label or spec.method} finetune")
        times["finetune"] = time.perf_counter() - t0
        histories["finetune"] = res.history
        val_acc, test_acc = acc(val), acc(test)
    else:   # nothing changed the network since the evaluation right after surgery
        val_acc, test_acc = before_val, before_test
    cost = count_cost(model, shape, example_input=example)
    # the methods' budgets were computed on the soft cost: it must equal the exact count
    verify_soft_cost(cost_model, groups, model, example)
    widths = group_widths(model, groups)
    selection = spec.select if spec.finetune is not None else "last (no fine-tuning)"
    return RunResult(
        label=spec.label or spec.method, method=spec.method, seed=spec.seed, budget=spec.budget.describe(),
        dense_macs=dense_cost.macs, dense_params=dense_cost.params, macs=cost.macs, params=cost.params,
        val_acc_before_finetune=before_val, test_acc_before_finetune=before_test, val_acc=val_acc,
        test_acc=test_acc, widths=widths, phase_time_s=times, histories=histories,
        method_summary=with_rounding(method.summary(), spec.budget, rounded), model=model, selection=selection)


def _weights_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _layer_widths(dense: Any, pruned: Any) -> dict[str, dict[str, list[int]]]:
    after = {layer.name: layer for layer in pruned.layers}
    out = {}
    for layer in dense.layers:
        if layer.name in out:
            continue
        now = after.get(layer.name)
        out[layer.name] = {"dense": [layer.in_channels, layer.out_channels],
                           "pruned": [now.in_channels, now.out_channels] if now is not None else [0, 0]}
    return out


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def prune(model: nn.Module, method: str = "l1", macs: float = 0.5, *, train: Any, val: Any, test: Any = None,
          example_input: Any = None, hyper: Any = None, finetune: Any = None,
          select: Literal["best_val", "last"] = "best_val", epochs: float | None = None,
          max_steps: int | None = None, seed: int = 0, batch_size: int = 128, eval_batch_size: int = 512,
          arch: Any = None, arch_fraction: float = 0.1, device: str = "auto", threads: int | None = None,
          channels_last: bool | None = None, inplace: bool = False,
          checkpoint_dir: str | Path | None = None, progress: bool = False, round_to: int | None = None) -> Pruned:
    """Prune `model` with `method` to the fraction `macs` of its MACs; return it physically smaller.

    Args:
        model: any ``nn.Module`` the engine can trace (convs, norms, linears; residual adds,
            concatenations and depthwise convs are coupled automatically). Not modified unless
            `inplace`.
        method: a registered method slug: the six papers (``gdp``, ``wgates``, ``functionality``,
            ``dsa``, ``dais``, ``greg``) and the baselines (``l1``, ``random``, ``slimming``,
            ``fpgm``, ``sensitivity``); ``prunerep.methods.list_methods()``.
        macs: fraction of the dense MACs to keep, in (0, 1] (0.5: half, 2x fewer).
        train: training data: a torch ``DataLoader`` yielding ``(inputs, targets)``, an
            ``(inputs, targets)`` pair of tensors, or a map-style ``Dataset`` (then batched here,
            shuffled with `seed`). Inputs are used as given (normalise them yourself).
        val: held-out validation data, same forms (never the test split): the selection of the
            fine-tuning epoch and the methods that choose on held-out data use it.
        test: optional test data, evaluated only for the record.
        example_input: one sample with its batch dimension (a tensor, or a shape such as
            ``(1, 3, 224, 224)``); default: the first validation sample. Groups are traced and
            MACs counted at its size.
        hyper: the method's hyper-parameters (a mapping of its fields or its dataclass).
        finetune: fine-tuning after surgery: a number of epochs, a mapping of OptimConfig fields
            (epochs, lr, schedule, ...) or None (no fine-tuning).
        select: ``best_val`` (the fine-tuning epoch with the best validation accuracy) or ``last``.
        epochs: length of the method's own training phases (None: its defaults).
        max_steps: a cap on the steps of every phase and of the fine-tuning (quick checks).
        seed: the one seed of the run (Python, NumPy, torch, data order, the method's draws).
        batch_size, eval_batch_size: batch sizes when `train` / `val` are tensors or Datasets.
        arch: held-out training batches for a bi-level method (DSA, DAIS); by default
            `arch_fraction` of `train` is held out (tensors, Datasets, plain DataLoaders).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
        threads: CPU intra-op threads (None: torch's default).
        channels_last: channels-last batches and weights (default: on, as the pipeline runs).
        inplace: prune `model` itself instead of a copy.
        checkpoint_dir: checkpoint every epoch there and resume a killed call with the same
            spec and weights.
        progress: progress bars.
        round_to: round every pruned width down to a multiple of this after the method (e.g. 8:
            on many CPUs and GPUs such widths turn more of the MACs cut into speed); None: no.

    Returns:
        ``Pruned(model, record)``: the pruned network on `device` and its `PruneRecord`.

    Raises:
        PruneError: bad input (unknown method, `macs` outside (0, 1], data that is not
            ``(inputs, targets)``, a model the engine cannot trace or group ...), before training.
    """
    from prunerep.engine import RuntimeConfig, pick_device
    from prunerep.provenance import run_key as make_run_key
    from prunerep.pruning.cost import count_cost

    if not isinstance(model, nn.Module):
        raise PruneError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    method = check_method(method)
    macs = check_macs(macs)
    if train is None:
        raise PruneError("train: give the training data (a DataLoader, (inputs, targets) tensors or a Dataset)")
    if val is None:
        raise PruneError("val: give held-out validation data (not the test split): the fine-tuning selection and "
                         "the methods that choose on held-out data use it; e.g. split off 10% of your training set")
    try:
        dev = pick_device(device)
    except (RuntimeError, ValueError) as err:
        raise PruneError(f"device={device!r}: {err}") from None
    cl = (dev.type != "mps") if channels_last is None else bool(channels_last)
    runtime = RuntimeConfig(device=str(dev), channels_last=cl, threads=threads, progress=progress)
    net = model if inplace else copy.deepcopy(model)
    net = net.to(dev).train()
    bilevel = bool(getattr(_method_class(method), "bilevel", False))
    arch_data = None
    if bilevel:
        if arch is None:
            train, arch_data = _split_for_arch(train, arch_fraction, batch_size, seed, method)
        else:
            arch_data = arch
    train_b = _batches(train, "train", batch_size, train=True, seed=seed, device=dev, channels_last=cl)
    val_b = _batches(val, "val", eval_batch_size, train=False, seed=seed, device=dev, channels_last=cl)
    test_b = (_batches(test, "test", eval_batch_size, train=False, seed=seed, device=dev, channels_last=cl)
              if test is not None else None)
    arch_b = (_batches(arch_data, "arch", batch_size, train=True, seed=seed + 1, device=dev, channels_last=cl)
              if arch_data is not None else None)
    example = _example(example_input, val_b, dev)
    groups = _groups(net, example)   # one clear error for a model the engine cannot trace
    dense_cost = count_cost(net, tuple(example.shape), example_input=example)
    dense_widths = groups.widths()
    spec = spec_for(method, macs, hyper=hyper, finetune=finetune, select=select, seed=seed, batch_size=batch_size,
                    eval_batch_size=eval_batch_size, arch_fraction=arch_fraction, epochs=epochs, max_steps=max_steps,
                    runtime=runtime, model=net, example_input=example, round_to=round_to)
    from prunerep.methods.base import get_method

    if not groups.select(get_method(spec.method, spec.hyper).prunable):
        raise PruneError(_no_group_message(net, method, groups))
    key = make_run_key(spec, _weights_digest(net), tuple(example.shape)) if checkpoint_dir else ""
    result = run_on_loaders(spec, net, example, train_b, val_b, test_b, arch_b, checkpoint_dir=checkpoint_dir,
                            run_key=key)
    pruned = result.model
    assert pruned is not None
    cost = count_cost(pruned, tuple(example.shape), example_input=example)
    from prunerep.config import to_dict

    record = PruneRecord(
        method=method, target_macs_keep=macs, budget=_budget_text(spec.budget), dense_macs=result.dense_macs,
        dense_params=result.dense_params, macs=result.macs, params=result.params, widths=dict(result.widths),
        dense_widths=dense_widths, layers=_layer_widths(dense_cost, cost), hyper=to_dict(spec.hyper),
        finetune=to_dict(spec.finetune) if spec.finetune is not None else None, selection=result.selection,
        val_acc_before_finetune=result.val_acc_before_finetune, val_acc=result.val_acc,
        test_acc_before_finetune=None if test is None else result.test_acc_before_finetune,
        test_acc=None if test is None else result.test_acc, phase_time_s=dict(result.phase_time_s),
        summary=_plain(result.method_summary), seed=seed, device=str(dev), example_shape=tuple(example.shape))
    return Pruned(pruned, record)


def _budget_text(budget: Budget) -> str:
    if budget.ratios is None:
        return budget.describe()
    ratios = sorted(set(round(r, 4) for r in budget.ratios.values()))
    return f"{budget.describe()}: remove {'/'.join(f'{r:g}' for r in ratios)} of each pruned group's channels"
