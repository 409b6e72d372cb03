"""The one training loop: hooks, bi-level steps, checkpoint + resume, selection on val."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunerep.engine import ArchOptimConfig, OptimConfig, RuntimeConfig, TrainHooks, fit
from prunerep.engine.trainer import CHECKPOINT_NAME

RUNTIME = RuntimeConfig(device="cpu", channels_last=False, progress=False)


class TensorLoader:
    """Deterministic in-memory loader: order is a pure function of (seed, epoch)."""

    def __init__(self, x, y, batch_size, seed=0, shuffle=True):
        self.x, self.y, self.bs, self.seed, self.shuffle, self.epoch = x, y, batch_size, seed, shuffle, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.x) // self.bs

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(len(self.x), generator=g) if self.shuffle else torch.arange(len(self.x))
        for i in range(len(self)):
            idx = order[i * self.bs:(i + 1) * self.bs]
            yield self.x[idx], self.y[idx]


def toy_problem(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return x, y


def toy_model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def test_fit_learns_and_reports_history():
    x, y = toy_problem()
    model = toy_model()
    res = fit(model, TensorLoader(x, y, 32), optim=OptimConfig(epochs=5, lr=0.1, weight_decay=0),
              runtime=RUNTIME, val_loader=TensorLoader(x, y, 64, shuffle=False))
    assert [h["epoch"] for h in res.history] == [1, 2, 3, 4, 5]
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.val["acc"] > 90
    assert res.steps == 5 * 8


def test_fractional_epochs_and_max_steps():
    x, y = toy_problem()
    res = fit(toy_model(), TensorLoader(x, y, 32), optim=OptimConfig(epochs=1.5), runtime=RUNTIME)
    assert res.steps == 12 and len(res.history) == 2
    res = fit(toy_model(), TensorLoader(x, y, 32), optim=OptimConfig(epochs=3, max_steps=5), runtime=RUNTIME)
    assert res.steps == 5


class FreezeFirstLayer(TrainHooks):
    """after_backward edits gradients: zeroing them keeps the layer fixed (weight decay off)."""

    def __init__(self):
        self.extra_calls = 0

    def extra_loss(self, model, state):
        self.extra_calls += 1
        return 0.0 * model[0].weight.sum()

    def after_backward(self, model, state):
        model[0].weight.grad.zero_()
        model[0].bias.grad.zero_()


def test_hooks_extra_loss_and_gradient_edits():
    x, y = toy_problem()
    model = toy_model()
    before = model[0].weight.detach().clone()
    hook = FreezeFirstLayer()
    res = fit(model, TensorLoader(x, y, 32), optim=OptimConfig(epochs=1, weight_decay=0, momentum=0),
              runtime=RUNTIME, hooks=[hook])
    assert hook.extra_calls == res.steps
    torch.testing.assert_close(model[0].weight, before, rtol=0, atol=0)


class ArchScale(TrainHooks):
    """A learnable per-feature scale stepped only on held-out batches."""

    def __init__(self, model):
        self.alpha = nn.Parameter(torch.ones(16))
        self.seen_phases = set()
        model[1].register_forward_hook(lambda m, i, o: o * self.alpha)

    def arch_parameters(self, model):
        return [self.alpha]

    def extra_loss(self, model, state):
        self.seen_phases.add(state.phase)
        return None


def test_bilevel_arch_step_updates_only_arch_params_from_heldout_batches():
    x, y = toy_problem()
    model = toy_model()
    hook = ArchScale(model)
    held_x, held_y = toy_problem(64, seed=5)
    fit(model, TensorLoader(x, y, 32), optim=OptimConfig(epochs=1), runtime=RUNTIME, hooks=[hook],
        arch_loader=TensorLoader(held_x, held_y, 16), arch_optim=ArchOptimConfig(lr=0.05, every=2))
    assert hook.seen_phases == {"weights", "arch"}
    assert not torch.equal(hook.alpha.detach(), torch.ones(16))
    with pytest.raises(ValueError, match="no arch_loader"):
        fit(toy_model(), TensorLoader(x, y, 32), optim=OptimConfig(epochs=1), runtime=RUNTIME,
            hooks=[ArchScale(toy_model())])


class KillAtEpoch(TrainHooks):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, model, state):
        if state.epoch == self.epoch:
            raise KeyboardInterrupt("simulated kill")


def test_resume_after_kill_gives_the_uninterrupted_result(tmp_path):
    x, y = toy_problem()
    optim = OptimConfig(epochs=4, lr=0.1, schedule="cosine")
    reference = toy_model()
    ref = fit(reference, TensorLoader(x, y, 32), optim=optim, runtime=RUNTIME)

    model = toy_model()
    with pytest.raises(KeyboardInterrupt):
        fit(model, TensorLoader(x, y, 32), optim=optim, runtime=RUNTIME, hooks=[KillAtEpoch(2)],
            checkpoint_dir=tmp_path, run_key="k")
    assert (tmp_path / CHECKPOINT_NAME).exists()
    assert not list(tmp_path.glob("*.tmp"))  # atomic: no half-written file left behind
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert saved["epoch"] == 1

    resumed_model = toy_model()
    res = fit(resumed_model, TensorLoader(x, y, 32), optim=optim, runtime=RUNTIME,
              hooks=[KillAtEpoch(99)], checkpoint_dir=tmp_path, run_key="k")
    assert res.resumed_from_epoch == 1
    assert [h["epoch"] for h in res.history] == [1, 2, 3, 4]
    for a, b in zip(reference.parameters(), resumed_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert res.history[-1]["train_loss"] == pytest.approx(ref.history[-1]["train_loss"])


def test_checkpoint_of_another_run_is_ignored(tmp_path):
    x, y = toy_problem()
    optim = OptimConfig(epochs=1)
    fit(toy_model(), TensorLoader(x, y, 32), optim=optim, runtime=RUNTIME, checkpoint_dir=tmp_path, run_key="a")
    res = fit(toy_model(), TensorLoader(x, y, 32), optim=optim, runtime=RUNTIME, checkpoint_dir=tmp_path, run_key="b")
    assert res.resumed_from_epoch is None
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["run_key"] == "b"


@pytest.mark.parametrize("damage", ["truncate", "empty", "foreign", "flip_byte"])
def test_a_damaged_checkpoint_is_set_aside_and_the_previous_good_one_resumes(tmp_path, damage, capsys):
    x, y = toy_problem()
    optim = OptimConfig(epochs=4, lr=0.1, schedule="cosine")
    reference = toy_model()
    fit(reference, TensorLoader(x, y, 32), optim=optim, runtime=RUNTIME)
    with pytest.raises(KeyboardInterrupt):
        fit(toy_model(), TensorLoader(x, y, 32), optim=optim, runtime=RUNTIME, hooks=[KillAtEpoch(3)],
            checkpoint_dir=tmp_path, run_key="k")
    newest = tmp_path / CHECKPOINT_NAME
    assert torch.load(newest, weights_only=True)["epoch"] == 2
    assert torch.load(tmp_path / "checkpoint.prev.pt", weights_only=True)["epoch"] == 1
    data = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        newest.write_bytes(b"")
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, newest)   # a readable file that is no checkpoint
        (tmp_path / (CHECKPOINT_NAME + ".sha256")).unlink()
    else:  # one flipped byte in the middle: only the digest can tell
        middle = len(data) // 2
        newest.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])

    resumed = toy_model()
    res = fit(resumed, TensorLoader(x, y, 32), optim=optim, runtime=RUNTIME, hooks=[KillAtEpoch(99)],
              checkpoint_dir=tmp_path, run_key="k")
    assert "is unreadable" in capsys.readouterr().out
    assert (tmp_path / (CHECKPOINT_NAME + ".corrupt")).exists()     # set aside, not deleted
    assert res.resumed_from_epoch == 1                                # from the previous good one
    for a, b in zip(reference.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resume_reports_the_whole_runs_wall_time(tmp_path):
    x, y = toy_problem()
    optim = OptimConfig(epochs=3)
    with pytest.raises(KeyboardInterrupt):
        fit(toy_model(), TensorLoader(x, y, 32), optim=optim, runtime=RUNTIME, hooks=[KillAtEpoch(2)],
            checkpoint_dir=tmp_path, run_key="k")
    before = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["elapsed_s"]
    assert before > 0
    res = fit(toy_model(), TensorLoader(x, y, 32), optim=optim, runtime=RUNTIME, hooks=[KillAtEpoch(99)],
              checkpoint_dir=tmp_path, run_key="k")
    assert res.resumed_from_epoch == 1 and res.wall_time_s > before


class StopAfter(TrainHooks):
    def after_step(self, model, state):
        state.stop = state.step >= 3


def test_a_hook_can_stop_the_run():
    x, y = toy_problem()
    res = fit(toy_model(), TensorLoader(x, y, 32), optim=OptimConfig(epochs=5), runtime=RUNTIME, hooks=[StopAfter()])
    assert res.steps == 3 and res.stopped_early


def test_best_val_selection_restores_the_best_epoch():
    x, y = toy_problem()
    res = fit(toy_model(), TensorLoader(x, y, 32), optim=OptimConfig(epochs=4, lr=0.5),
              runtime=RUNTIME, val_loader=TensorLoader(x, y, 64, shuffle=False), select="best_val")
    best = max(h["val_acc"] for h in res.history)
    assert res.val["acc"] == pytest.approx(best)
    assert res.history[res.selected_epoch - 1]["val_acc"] == pytest.approx(best)
