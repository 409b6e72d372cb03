"""`python -m prunerep prune ...`: the public API (`prunerep.prune`) from the shell.

    python -m prunerep methods
    python -m prunerep prune --model tv_resnet18 --model-kwargs '{"num_classes": 10}' \\
        --data my_data.pt --method l1 --macs 0.5 --finetune 2 --out pruned.pt --record record.json

``--model``: a model name of the registry (``resnet56``, ``tv_resnet18``, ``torchvision:<name>``;
``python -c "import prunerep.models as m; print(m.list_models())"``), a checkpoint written by
`prunerep.models.checkpoint.save_model` (a ``.pt`` path), or ``package.module:function``
returning an ``nn.Module``.

``--data``: a ``.pt`` file holding ``{"train": (inputs, targets), "val": (inputs, targets),
"test": ...}`` (tensors; "test" optional; read with ``weights_only=True``), or
``package.module:function`` returning such a mapping (DataLoaders allowed there).

The pruned network is saved to ``--out`` (architecture + state dict, loadable with
`prunerep.models.checkpoint.load_model`, when the model came from the registry or a checkpoint;
otherwise the whole module with ``torch.save``), the record to ``--record`` (JSON), and the
record's summary is printed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from prunerep.api import PruneError


def _load_callable(ref: str, what: str) -> Any:
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise PruneError(f"--{what} {ref!r}: cannot import {module_name!r} ({err})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise PruneError(f"--{what} {ref!r}: {module_name!r} has no callable {attr!r}")
    return fn()


def load_model_arg(ref: str, kwargs: dict[str, Any]) -> Any:
    """The dense model named by ``--model`` (see the module docstring)."""
    from torch import nn

    from prunerep.models import get_model
    from prunerep.models.checkpoint import load_model

    if ref.endswith((".pt", ".pth")) or Path(ref).is_file():
        if kwargs:
            raise PruneError("--model-kwargs: a checkpoint records its architecture; drop --model-kwargs")
        try:
            model, _ = load_model(ref)
        except (FileNotFoundError, ValueError) as err:
            raise PruneError(f"--model {ref}: {err}") from None
        return model.train()
    if ":" in ref and not ref.startswith("torchvision:"):
        model = _load_callable(ref, "model")
        if kwargs:
            raise PruneError("--model-kwargs: only for registry names; pass arguments inside your function")
    else:
        try:
            model = get_model(ref, **kwargs)
        except (KeyError, ValueError, TypeError) as err:
            raise PruneError(f"--model {ref!r}: {err}") from None
    if not isinstance(model, nn.Module):
        raise PruneError(f"--model {ref!r}: did not give an nn.Module (got {type(model).__name__})")
    return model


def load_data_arg(ref: str) -> dict[str, Any]:
    """The ``{"train", "val"[, "test"]}`` mapping named by ``--data``."""
    import torch

    if ":" in ref and not Path(ref).exists():
        data = _load_callable(ref, "data")
    else:
        if not Path(ref).is_file():
            raise PruneError(f"--data {ref}: file not found; save a dict with torch.save({{'train': (x, y), "
                             "'val': (x, y)}, path)")
        try:
            data = torch.load(ref, map_location="cpu", weights_only=True)
        except Exception as err:
            raise PruneError(f"--data {ref}: not a torch file of tensors ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or not {"train", "val"} <= set(data):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise PruneError(f"--data {ref}: expected a mapping with keys 'train' and 'val' (and optionally 'test'), "
                         f"got {keys}")
    unknown = sorted(set(data) - {"train", "val", "test"})
    if unknown:
        raise PruneError(f"--data {ref}: unknown keys {unknown}; use 'train', 'val', 'test'")
    return data


def _json_arg(text: str | None, name: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise PruneError(f"{name}: not valid JSON ({err}); e.g. {name} '{{\"lr\": 0.01}}'") from None


def _finetune_arg(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return _json_arg(text, "--finetune")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m prunerep", description="Prune a network with any method of "
                                "prunerep (the public API, prunerep.prune).")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("methods", help="list the registered methods")
    q = sub.add_parser("prune", help="prune a model to a fraction of its MACs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--model", required=True, help="registry name, checkpoint .pt, or package.module:function")
    q.add_argument("--model-kwargs", default=None, help="JSON keyword arguments of a registry model")
    q.add_argument("--data", required=True, help=".pt file {'train': (x, y), 'val': (x, y)} or module:function")
    q.add_argument("--method", default="l1", help="registered method slug (python -m prunerep methods)")
    q.add_argument("--macs", type=float, required=True, help="fraction of the dense MACs to keep, in (0, 1]")
    q.add_argument("--hyper", default=None, help="JSON mapping of the method's hyper-parameters")
    q.add_argument("--round-to", type=int, default=None,
                   help="round every pruned width down to a multiple of this (e.g. 8) after the method")
    q.add_argument("--finetune", default=None, help="epochs of fine-tuning, or a JSON mapping of OptimConfig fields")
    q.add_argument("--select", default="best_val", choices=["best_val", "last"])
    q.add_argument("--epochs", type=float, default=None, help="length of the method's own training phases")
    q.add_argument("--max-steps", type=int, default=None, help="cap on the steps of every phase (quick checks)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--batch-size", type=int, default=128)
    q.add_argument("--device", default="auto")
    q.add_argument("--threads", type=int, default=None)
    q.add_argument("--out", default=None, help="where to save the pruned network")
    q.add_argument("--record", default=None, help="where to write the record (JSON)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.cmd == "methods":
            from prunerep.methods import get_method, list_methods

            for slug in list_methods():
                print(f"{slug:14s} {type(get_method(slug)).paper}")
            return 0
        return _prune(args)
    except PruneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _prune(args: argparse.Namespace) -> int:
    import torch

    from prunerep.api import prune
    from prunerep.engine.device import init_distributed, is_main_process
    from prunerep.io import atomic_write_text

    init_distributed()   # under torchrun: every rank prunes, each on its slice of every batch
    kwargs = _json_arg(args.model_kwargs, "--model-kwargs") or {}
    if not isinstance(kwargs, dict):
        raise PruneError("--model-kwargs: give a JSON object, e.g. '{\"num_classes\": 10}'")
    model = load_model_arg(args.model, kwargs)
    data = load_data_arg(args.data)
    pruned, record = prune(model, args.method, args.macs, train=data["train"], val=data["val"],
                           test=data.get("test"), hyper=_json_arg(args.hyper, "--hyper"),
                           finetune=_finetune_arg(args.finetune), select=args.select, epochs=args.epochs,
                           max_steps=args.max_steps, seed=args.seed, batch_size=args.batch_size, device=args.device,
                           threads=args.threads, round_to=args.round_to)
    if not is_main_process():   # rank 0 prints and writes
        return 0
    print(record)
    if args.out:
        pruned = pruned.cpu()
        if hasattr(pruned, "arch_spec"):
            from prunerep.models.checkpoint import save_model

            save_model(pruned, args.out, meta={"record": record.to_dict()})
            print(f"saved the pruned network to {args.out} (load with prunerep.models.checkpoint.load_model)")
        else:
            torch.save(pruned, args.out)
            print(f"saved the pruned network to {args.out} as a whole module (torch.load(..., weights_only=False); "
                  "it has no registry architecture to save as data)")
    if args.record:
        atomic_write_text(record.to_json() + "\n", Path(args.record))
        print(f"wrote the record to {args.record}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
