"""The one training loop: pretraining, sparse training, search and fine-tuning all run here.

Methods take part only through `TrainHooks` (extra loss terms, gradient edits after backward,
per-step and per-epoch updates, architecture parameters stepped on held-out batches). The loop
never names a method. It checkpoints atomically after every epoch and resumes from the last
complete epoch after a kill; the data order is a pure function of (seed, epoch), so a resumed
run sees the same batches it would have seen.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import os
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm as auto_tqdm
from tqdm.std import tqdm as text_tqdm

from prunerep.engine.config import ArchOptimConfig, OptimConfig, RuntimeConfig
from prunerep.engine.device import is_distributed, is_main_process, world_size
from prunerep.engine.distributed import average_gradients, check_same_across_ranks, global_batchnorm
from prunerep.engine.evaluate import IGNORE_INDEX, evaluate
from prunerep.engine.hooks import TrainHooks, TrainState
from prunerep.engine.schedules import lr_at
from prunerep.io import atomic_torch_save, atomic_write_text

CHECKPOINT_NAME = "checkpoint.pt"


class BatchLoader(Protocol):
    """What the loop needs from a loader (prunerep.data.Loader satisfies it)."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...
    def __len__(self) -> int: ...
    def set_epoch(self, epoch: int) -> None: ...


@dataclass
class FitResult:
    """What a run produced: per-epoch history and the final/selected validation metrics."""

    history: list[dict[str, Any]] = field(default_factory=list)
    val: dict[str, float] | None = None       # metrics of the returned weights on the val split
    selected_epoch: int | None = None         # epoch whose weights were kept (select="best_val")
    steps: int = 0
    wall_time_s: float = 0.0
    stopped_early: bool = False
    resumed_from_epoch: int | None = None     # wall_time_s includes the time before the resume
    elapsed_before_resume_s: float = 0.0      # training time of earlier attempts, up to the resumed checkpoint


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _previous_path(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def save_resume_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `path` atomically with a sha256 sidecar, keeping the last good one as `*.prev.pt`.

    The previous checkpoint is the fallback when the newest one turns out unreadable (a disk
    fault, a copy cut short): the run then repeats one epoch instead of starting over."""
    if path.exists():
        os.replace(path, _previous_path(path))
        if _digest_path(path).exists():
            os.replace(_digest_path(path), _digest_path(_previous_path(path)))
    atomic_torch_save(state, path)
    atomic_write_text(_sha256(path) + "\n", _digest_path(path))


def _read_verified(path: Path, device: torch.device) -> dict[str, Any]:
    digest_file = _digest_path(path)
    if digest_file.exists():
        expected = digest_file.read_text().strip()
        if _sha256(path) != expected:
            raise ValueError(f"sha256 differs from {digest_file.name}")
    ckpt = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(ckpt, dict) or not {"run_key", "epoch", "model", "optimizer"} <= set(ckpt):
        raise ValueError("not a training checkpoint of this project (keys missing)")
    return ckpt


def load_resume_checkpoint(path: Path, device: torch.device, desc: str = "fit") -> dict[str, Any] | None:
    """The newest readable resume checkpoint at `path` (or its `*.prev.pt`), else None.

    A truncated, corrupt (digest mismatch) or foreign file is renamed `*.corrupt` with a message,
    never loaded and never left to block the next rerun; training then resumes from the previous
    good checkpoint or starts over."""
    for candidate in (path, _previous_path(path)):
        if not candidate.exists():
            continue
        try:
            return _read_verified(candidate, device)
        except Exception as err:  # any unreadable file is set aside the same way
            if not is_main_process():   # rank 0 sets it aside; the others just skip it
                continue
            aside = candidate.with_name(candidate.name + ".corrupt")
            os.replace(candidate, aside)
            _digest_path(candidate).unlink(missing_ok=True)
            if is_main_process():
                print(f"[{desc}] {candidate} is unreadable ({type(err).__name__}: {str(err)[:120]}); "
                      f"moved to {aside.name}, trying the previous checkpoint or starting over",
                      flush=True)
    return None


def _progress_bar() -> type[text_tqdm]:
    """A notebook widget only when printing straight into a Jupyter kernel's output; a text bar
    otherwise (a terminal, a pipe, or a run's log file that the runner redirected stdout to)."""
    return auto_tqdm if type(sys.stdout).__module__.startswith("ipykernel") else text_tqdm


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _cycle(loader: BatchLoader, start_epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    epoch = start_epoch
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def _rng_state() -> dict[str, Any]:
    """Every global random stream a method may draw from (DSA samples its masks from torch's),
    in a form `torch.load(weights_only=True)` reads back."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    """Continue the random streams where the checkpointed run stood, so a resumed run draws what
    the uninterrupted one would have drawn."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _arch_batches(loader: BatchLoader, consumed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The held-out batches of architecture steps, from where a run that already took `consumed`
    of them stands.

    The held-out loader is cycled independently of the training epochs (it is smaller), so a
    resumed run must continue at the same pass and batch as the uninterrupted one: restarting it
    at the training epoch would feed the architecture parameters other batches, and a killed
    DSA or DAIS search would end with other widths. Skipped batches are drawn and dropped (the
    loader's order and augmentation are seeded per pass, so they are the same batches)."""
    per_pass = len(loader)
    if per_pass == 0:
        raise ValueError("fit: the held-out loader for architecture steps is empty (smaller than one batch?)")
    batches = _cycle(loader, consumed // per_pass)
    for _ in range(consumed % per_pass):
        next(batches)
    return batches


def _weight_param_groups(model: nn.Module, hooks: Sequence[TrainHooks], optim: OptimConfig,
                         arch_ids: set[int]) -> list[dict[str, Any]]:
    for hook in hooks:
        groups = hook.param_groups(model, optim.weight_decay)
        if groups is not None:
            return [dict(g, params=[p for p in g["params"] if id(p) not in arch_ids and p.requires_grad])
                    for g in groups]
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in arch_ids]
    return [{"params": params, "weight_decay": optim.weight_decay}]


def fit(model: nn.Module, train_loader: BatchLoader, *, optim: OptimConfig,
        runtime: RuntimeConfig | None = None, hooks: Sequence[TrainHooks] = (),
        val_loader: Iterable | None = None, arch_loader: BatchLoader | None = None,
        arch_optim: ArchOptimConfig | None = None, checkpoint_dir: str | Path | None = None,
        run_key: str = "", select: Literal["last", "best_val"] = "last",
        desc: str = "train") -> FitResult:
    """Train `model` (already on its device) with SGD under `optim` and the given hooks.

    Args:
        model: the network; gate modules that hooks attach must be submodules so that they are
            saved in checkpoints and moved with the model.
        train_loader: batches on the model's device; `set_epoch(e)` fixes order/augmentation.
        optim: epochs, batch size, learning-rate schedule, weight decay.
        runtime: channels_last, AMP (CUDA only), progress bar.
        hooks: method hooks, called in order.
        val_loader: evaluated after every epoch (model selection uses it, never the test split).
        arch_loader: held-out batches for architecture steps; required iff a hook has
            architecture parameters.
        arch_optim: optimiser of the architecture parameters.
        checkpoint_dir: where `checkpoint.pt` is written after every epoch (atomically). If it
            holds a checkpoint with the same `run_key`, training resumes from it.
        run_key: identity of the run (config + data + initial weights); a checkpoint written
            under another key is ignored (and overwritten).
        select: return the last weights, or those of the epoch with the best val accuracy.
        desc: progress-bar label.
    """
    runtime = runtime or RuntimeConfig()
    net = _unwrap(model)
    device = next(net.parameters()).device
    amp = runtime.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    if runtime.channels_last:
        net.to(memory_format=torch.channels_last)

    arch_params = [p for h in hooks for p in h.arch_parameters(net)]
    arch_ids = {id(p) for p in arch_params}
    if arch_params and arch_loader is None:
        raise ValueError("fit: a hook has architecture parameters but no arch_loader (held-out batches) was given")
    optimizer = torch.optim.SGD(_weight_param_groups(net, hooks, optim, arch_ids), lr=optim.lr,
                                momentum=optim.momentum, nesterov=optim.nesterov and optim.momentum > 0)
    arch_optimizer = None
    if arch_params:
        arch_optim = arch_optim or ArchOptimConfig()
        if arch_optim.optimizer == "adam":
            arch_optimizer = torch.optim.Adam(arch_params, lr=arch_optim.lr, betas=arch_optim.betas,
                                              weight_decay=arch_optim.weight_decay)
        else:
            arch_optimizer = torch.optim.SGD(arch_params, lr=arch_optim.lr, momentum=0.9,
                                             weight_decay=arch_optim.weight_decay)

    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("fit: the training loader is empty (dataset smaller than one batch with drop_last?)")
    total_steps = max(1, round(optim.epochs * steps_per_epoch))
    if optim.max_steps is not None:
        total_steps = min(total_steps, optim.max_steps)
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    warmup_steps = round(optim.warmup_epochs * steps_per_epoch)

    def lr_for(step: int) -> float:
        return lr_at(step, total_steps, base_lr=optim.lr, schedule=optim.schedule,
                     steps_per_epoch=steps_per_epoch, milestones=optim.milestones, gamma=optim.gamma,
                     warmup_steps=warmup_steps, final_lr_fraction=optim.final_lr_fraction)

    state = TrainState(steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    result = FitResult()
    best_acc, best_weights = -math.inf, None
    start_epoch = 0

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
    elapsed_before_resume = 0.0
    ckpt = load_resume_checkpoint(ckpt_path, device, desc) if ckpt_path is not None else None
    if ckpt is not None:
        if ckpt.get("run_key") == run_key:
            net.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if arch_optimizer is not None and ckpt.get("arch_optimizer") is not None:
                arch_optimizer.load_state_dict(ckpt["arch_optimizer"])
            for hook, hook_state in zip(hooks, ckpt["hooks"], strict=True):
                hook.load_state_dict(hook_state)
            scaler.load_state_dict(ckpt["scaler"]) if ckpt.get("scaler") else None
            result.history = list(ckpt["history"])
            state.step = ckpt["step"]
            if ckpt.get("rng") is not None:   # checkpoints written before random states were saved have none
                _set_rng_state(ckpt["rng"])
            start_epoch = ckpt["epoch"] + 1
            best_acc = ckpt.get("best_acc", -math.inf)
            best_weights = ckpt.get("best_weights")
            result.selected_epoch = ckpt.get("selected_epoch")
            result.stopped_early = bool(ckpt.get("stopped_early", False))
            result.resumed_from_epoch = ckpt["epoch"]
            # Timing claims need the whole run's time, not the part after the last kill.
            elapsed_before_resume = float(ckpt.get("elapsed_s", 0.0))
            result.elapsed_before_resume_s = elapsed_before_resume
            if is_main_process():
                print(f"[{desc}] resuming after epoch {ckpt['epoch'] + 1}/{n_epochs} from {ckpt_path}", flush=True)
        elif is_main_process():
            print(f"[{desc}] ignoring {ckpt_path}: it belongs to another run (config or data changed)", flush=True)

    criterion_smoothing = optim.label_smoothing
    arch_every = arch_optim.every if arch_optim else 1
    # one architecture step after every `arch_every`-th weight step: state.step // arch_every so far
    arch_iter = _arch_batches(arch_loader, state.step // arch_every) if arch_params else None
    t_start = time.perf_counter()
    for hook in hooks:
        hook.on_train_start(net, state)

    done = state.step >= total_steps or result.stopped_early
    # Several ranks (torchrun): gradients averaged after each backward, BatchNorm over the global
    # batch (prunerep.engine.distributed); a DDP-wrapped model averages its own gradients.
    average_over_ranks = is_distributed() and not isinstance(model, nn.parallel.DistributedDataParallel)
    # every rank must resume from the same checkpoint (a rank that could not read it would start
    # over, and the ranks would then run different epochs): stop here, with the reason, if not
    check_same_across_ranks(net, f"{desc} start (resumed after epoch {start_epoch})" if start_epoch
                            else f"{desc} start")
    trainable = [p for p in net.parameters() if p.requires_grad]
    with global_batchnorm(net) if average_over_ranks else contextlib.nullcontext():
        for epoch in range(start_epoch, n_epochs):
            if done:
                break
            state.epoch = epoch
            net.train()
            train_loader.set_epoch(epoch)
            for hook in hooks:
                hook.on_epoch_start(net, state)
            sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, correct, targets, images
            t_epoch = time.perf_counter()
            steps_this_epoch = min(steps_per_epoch, total_steps - state.step)
            bar = _progress_bar()(total=steps_this_epoch, desc=f"{desc} {epoch + 1}/{n_epochs}", leave=False,
                       disable=not (runtime.progress and is_main_process()), file=sys.stdout,
                       mininterval=1.0 if sys.stdout.isatty() else 60.0)
            for x, y in train_loader:
                state.lr = lr_for(state.step)
                for group in optimizer.param_groups:
                    group["lr"] = state.lr * group.get("lr_scale", 1.0)
                state.phase = "weights"
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                    logits = model(x)
                    loss = F.cross_entropy(logits, y, label_smoothing=criterion_smoothing)
                total = _with_extra_losses(loss, net, hooks, state)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                if average_over_ranks:   # before unscaling: every rank then sees the same overflow
                    average_gradients(trainable)
                scaler.unscale_(optimizer)  # hooks edit true gradients, never scaled ones
                for hook in hooks:
                    hook.after_backward(net, state)
                scaler.step(optimizer)
                scaler.update()
                state.step += 1
                with torch.no_grad():
                    valid = y != IGNORE_INDEX      # all of them, but for unlabelled pixels
                    n_valid = valid.sum()
                    sums[0] += loss.detach().float() * n_valid
                    sums[1] += ((logits.argmax(1) == y) & valid).sum()
                    sums[2] += n_valid
                    sums[3] += y.shape[0]
                for hook in hooks:
                    hook.after_step(net, state)

                if arch_optimizer is not None and state.step % arch_every == 0:
                    _arch_step(net, hooks, state, arch_iter, arch_params, arch_optimizer, device, amp, amp_dtype)

                bar.update(1)
                if state.step >= total_steps or state.stop:
                    break
            bar.close()

            state.phase = "weights"
            for hook in hooks:
                hook.on_epoch_end(net, state)
            if is_distributed():
                torch.distributed.all_reduce(sums)
            loss_sum, correct, count, images = sums.tolist()
            elapsed = time.perf_counter() - t_epoch
            record: dict[str, Any] = {
                "epoch": epoch + 1, "step": state.step, "lr": state.lr,
                "train_loss": loss_sum / max(count, 1), "train_acc": 100.0 * correct / max(count, 1),
                "epoch_time_s": elapsed, "train_images_per_s": images / max(elapsed, 1e-9),
            }
            if val_loader is not None:
                val = evaluate(net, val_loader, amp=amp)
                record.update(val_loss=val["loss"], val_acc=val["acc"])
                if select == "best_val" and val["acc"] > best_acc:
                    best_acc = val["acc"]
                    best_weights = copy.deepcopy({k: v.detach().cpu() for k, v in net.state_dict().items()})
                    result.selected_epoch = epoch + 1
            record.update(state.logs)
            result.history.append(record)
            done = state.step >= total_steps or state.stop
            result.stopped_early = bool(state.stop)
            check_same_across_ranks(net, f"{desc} epoch {epoch + 1}")
            if is_main_process():
                msg = (f"[{desc}] epoch {epoch + 1}/{n_epochs} step {state.step}/{total_steps} "
                       f"loss {record['train_loss']:.4f} acc {record['train_acc']:.2f}")
                if "val_acc" in record:
                    msg += f" | val acc {record['val_acc']:.2f}"
                msg += f" | {record['train_images_per_s']:.0f} img/s"
                print(msg, flush=True)
                if ckpt_path is not None:
                    save_resume_checkpoint({
                        "run_key": run_key, "epoch": epoch, "step": state.step,
                        "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                        "arch_optimizer": arch_optimizer.state_dict() if arch_optimizer else None,
                        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                        "hooks": [h.state_dict() for h in hooks], "history": result.history,
                        "best_acc": best_acc, "best_weights": best_weights,
                        "selected_epoch": result.selected_epoch, "stopped_early": result.stopped_early,
                        "elapsed_s": elapsed_before_resume + time.perf_counter() - t_start,
                        "rng": _rng_state(),
                    }, ckpt_path)

    if select == "best_val" and best_weights is not None:
        net.load_state_dict(best_weights)
    elif select == "best_val" and val_loader is None:
        raise ValueError("fit: select='best_val' needs a val_loader")
    if val_loader is not None:
        result.val = evaluate(net, val_loader, amp=amp)
    result.steps = state.step
    result.wall_time_s = elapsed_before_resume + time.perf_counter() - t_start
    if runtime.channels_last:
        net.to(memory_format=torch.contiguous_format)
    return result


def _with_extra_losses(loss: torch.Tensor, net: nn.Module, hooks: Sequence[TrainHooks],
                       state: TrainState) -> torch.Tensor:
    """The task loss (kept in `state.loss` for the hooks) plus every hook's extra term."""
    state.loss = loss
    total = loss
    for hook in hooks:
        extra = hook.extra_loss(net, state)
        if extra is not None:
            total = total + extra
    return total


def _arch_step(net: nn.Module, hooks: Sequence[TrainHooks], state: TrainState,
               arch_iter: Iterator[tuple[torch.Tensor, torch.Tensor]], arch_params: list[nn.Parameter],
               arch_optimizer: torch.optim.Optimizer, device: torch.device, amp: bool,
               amp_dtype: torch.dtype) -> None:
    """One first-order (DARTS-style) step of the architecture parameters on a held-out batch."""
    state.phase = "arch"
    x, y = next(arch_iter)
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
        logits = net(x)
        loss = F.cross_entropy(logits, y)
    total = _with_extra_losses(loss, net, hooks, state)
    grads = torch.autograd.grad(total.float(), arch_params, allow_unused=True)
    for p, g in zip(arch_params, grads, strict=True):
        if g is not None and is_distributed():
            torch.distributed.all_reduce(g)
            g /= world_size()
        p.grad = g
    arch_optimizer.step()
    arch_optimizer.zero_grad(set_to_none=True)
    state.phase = "weights"
