"""Cost of DSA's training steps relative to plain training, measured interleaved on this machine.

    .venv/bin/python benchmarks/dsa_cost.py [--models resnet20 resnet56] [--rounds 5] [--batch 128]

For each model, one thread, random CIFAR-sized batches, in round-robin so that load from other
processes affects every variant alike, the median time of:

* ``dense``: a plain SGD step of the dense network (forward, backward, update);
* ``dsa_weights``: the weight step of DSA's search (Bernoulli masks after every BN, keep
  probabilities solved per forward, keep ratios detached);
* ``dsa_arch``: the architecture step (forward with masks, gradient w.r.t. the keep ratios only);
* ``pruned_<b>``: a plain step of the network pruned uniformly to MACs budget ``b``.

Ratios to ``dense`` are what the default profile's runtime estimate uses (they are stable under
load; absolute times are not). Not a test: nothing asserts a timing.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from prunerep.engine import TrainState
from prunerep.methods import Budget, MethodContext, get_method
from prunerep.methods.budget import top_k_masks, uniform_widths_for_macs
from prunerep.methods.importance import filter_l1
from prunerep.models import get_model
from prunerep.pruning.groups import find_groups
from prunerep.pruning.soft_cost import SoftCostModel
from prunerep.pruning.surgery import prune_channels


def _step_fn(model, params, x, y):
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--budgets", nargs="+", type=float, default=[0.5])
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    example = torch.zeros(1, 3, 32, 32)
    print(f"torch {torch.__version__}, 1 thread, batch {args.batch}, {args.rounds} rounds")
    for name in args.models:
        dense = get_model(name, shortcut="A").to(memory_format=torch.channels_last).train()
        variants = {"dense": _step_fn(dense, dense.parameters(), x, y)}

        gated = copy.deepcopy(dense)
        groups = find_groups(gated, example)
        cost = SoftCostModel.from_model(gated, example, groups)
        method = get_method("dsa")
        ctx = MethodContext(groups=groups, prunable=list(groups), example_input=example,
                            budget=Budget(macs_keep=0.5), cost_model=cost)
        gated = method.prepare(gated, ctx)
        state = TrainState()
        method.on_train_start(gated, state)
        weights = [p for n, p in gated.named_parameters() if not n.startswith("dsa.")]
        weight_step = _step_fn(gated, weights, x, y)
        logit = gated.dsa.logit

        def dsa_weights(step=weight_step, state=state):
            state.phase = "weights"
            step()

        def dsa_arch(model=gated, state=state, logit=logit):
            state.phase = "arch"
            (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), [logit])
            state.phase = "weights"
            return g

        variants["dsa_weights"] = dsa_weights
        variants["dsa_arch"] = dsa_arch
        for b in args.budgets:
            pruned = copy.deepcopy(dense)
            g = find_groups(pruned, example)
            widths, _ = uniform_widths_for_macs(SoftCostModel.from_model(pruned, example, g), list(g),
                                                b * cost.dense_macs())
            prune_channels(pruned, g, top_k_masks(filter_l1(pruned, list(g)), widths))
            variants[f"pruned_{b:g}"] = _step_fn(pruned, pruned.parameters(), x, y)
        times: dict[str, list[float]] = {k: [] for k in variants}
        for fn in variants.values():
            fn()  # warm-up
        for _ in range(args.rounds):
            for k, fn in variants.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        base = statistics.median(times["dense"])
        for k, ts in times.items():
            med = statistics.median(ts)
            print(f"{name:9s} {k:12s} {med * 1000:8.1f} ms/step  {args.batch / med:7.1f} img/s  x{med / base:.2f} of dense")


if __name__ == "__main__":
    main()
