"""Training throughput of the engine's loop (`prunerep.engine.fit`) vs a bare PyTorch loop.

Same model, batch size, threads, memory format and batches (one in-memory uint8 CIFAR-shaped
array behind the project's Loader for both), interleaved A/B rounds so machine-load drift hits
both equally. Prints images/s and the ratio engine / bare (target: >= 0.95).

    python benchmarks/engine_throughput.py --model resnet56 --steps 40 --rounds 3 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from prunerep.data import ArrayDataset, Loader
from prunerep.engine import OptimConfig, RuntimeConfig, fit
from prunerep.models import get_model


def bare_loop(model, loader, steps, lr, channels_last):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    done = 0
    loader.set_epoch(0)
    t0 = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += 1
        if done == steps:
            break
    return done * loader.batch_size / (time.perf_counter() - t0)


def engine_loop(model, loader, steps, lr, channels_last):
    optim = OptimConfig(epochs=1, lr=lr, max_steps=steps, batch_size=loader.batch_size, schedule="constant")
    res = fit(model, loader, optim=optim, runtime=RuntimeConfig(device="cpu", channels_last=channels_last, progress=False))
    return res.history[-1]["train_images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet56")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--no-channels-last", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cl = not args.no_channels_last
    g = torch.Generator().manual_seed(0)
    n = args.batch_size * (args.steps + 1)
    data = ArrayDataset(images=torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                        labels=torch.randint(0, 10, (n,), generator=g), classes=tuple(str(i) for i in range(10)))
    loader = Loader(data, args.batch_size, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True, augment=True,
                    drop_last=True, channels_last=cl)
    results = {"bare": [], "engine": []}
    for r in range(args.rounds):
        for name, fn in (("bare", bare_loop), ("engine", engine_loop)):
            torch.manual_seed(0)
            model = get_model(args.model)
            if cl:
                model = model.to(memory_format=torch.channels_last)
            fn(model, loader, 3, 0.05, cl)  # warm-up (allocator, oneDNN primitives)
            results[name].append(fn(model, loader, args.steps, 0.05, cl))
        print(f"round {r + 1}: bare {results['bare'][-1]:.1f} img/s, engine {results['engine'][-1]:.1f} img/s", flush=True)
    bare, eng = statistics.median(results["bare"]), statistics.median(results["engine"])
    print(f"\n{args.model}, batch {args.batch_size}, threads {args.threads}, channels_last {cl}, "
          f"{args.steps} steps x {args.rounds} rounds (median)")
    print(f"bare PyTorch loop: {bare:8.1f} img/s")
    print(f"prunerep engine:   {eng:8.1f} img/s")
    print(f"ratio engine/bare: {eng / bare:8.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
