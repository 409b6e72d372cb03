"""ONNX export of (pruned) networks, checked against PyTorch with onnxruntime.

Exporter choice: torch 2.14 ships two ONNX exporters. The ``torch.export``-based one
(``dynamo=True``, the default of ``torch.onnx.export`` since 2.9) takes 10-20 s per CIFAR ResNet
on a CPU core, the TorchScript-based one (``dynamo=False``) about 0.5 s, and both give outputs
equal to PyTorch's to float32 rounding for our models (ConstantConv included). We default to the
TorchScript exporter so every pruned checkpoint can be exported and checked in the fast test
tier, silence its deprecation warning, and keep ``dynamo=True`` one argument away (the test
suite exercises it in the slow tier). When a future torch drops the TorchScript exporter, flip
the default.

Opset: 18 by default. The ``torch.export``-based exporter has no implementations below 18; asked
for 17 it exports at 18, tries to down-convert, fails (``axes`` became an input of Reduce ops in
18) and prints a long conversion traceback while still writing a correct opset-18 file. Both
exporters write 18 cleanly and onnxruntime runs it.

Shapes are static (the example input's), so a removed branch's constant output and the empty
tensors of removed producers are folded away by the exporter's constant folding.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["check_onnx", "export_onnx"]


def _inputs(example_input: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    return tuple(example_input)


def _flatten(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _flatten(v)]
    if isinstance(out, list | tuple):
        return [t for v in out for t in _flatten(v)]
    return []


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    example_input: Any,
    *,
    opset: int = 18,
    dynamo: bool = False,
) -> Path:
    """Export ``model`` (in eval mode) to ONNX.

    Args:
        model: The network; its training flags are restored afterwards.
        path: Output ``.onnx`` file (parent directories are created).
        example_input: Tensor (or tuple of tensors) fixing the input shapes.
        opset: ONNX opset version (18: the lowest the ``dynamo`` exporter supports without a
            lossy down-conversion, see the module docstring).
        dynamo: Use the ``torch.export``-based exporter (slower, see the module docstring).

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = _inputs(example_input)
    device = next((t.device for t in [*model.parameters(), *model.buffers()]), None)
    if device is not None:
        args = tuple(a.to(device) for a in args)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            # ConstantConv reads the input's shape as Python ints; with static shapes that is
            # exactly what we want, so the tracer's "treated as a constant" warning is noise.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            kwargs: dict[str, Any] = {"input_names": [f"input{i}" for i in range(len(args))]}
            if dynamo:
                torch.onnx.export(
                    model,
                    args,
                    str(path),
                    dynamo=True,
                    external_data=False,
                    verbose=False,  # no "[torch.onnx] Translate the graph..." progress lines
                    opset_version=opset,
                    **kwargs,
                )
            else:
                torch.onnx.export(
                    model,
                    args,
                    str(path),
                    dynamo=False,
                    opset_version=opset,
                    do_constant_folding=True,
                    **kwargs,
                )
    finally:
        for m, mode in modes:
            m.training = mode
    return path


def check_onnx(
    path: str | os.PathLike, model: nn.Module, example_input: Any, atol: float = 1e-4
) -> float:
    """Run the ONNX file with onnxruntime (CPU) and compare with ``model`` in eval mode.

    Args:
        path: File written by :func:`export_onnx`.
        model: The PyTorch model it was exported from.
        example_input: Input (tensor or tuple); its shapes must be the exported ones.
        atol: Largest acceptable absolute difference.

    Returns:
        The largest absolute difference over all outputs.

    Raises:
        ValueError: Different number or shapes of outputs, or a difference above ``atol``.
    """
    import onnxruntime as ort

    args = _inputs(example_input)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {
        inp.name: a.detach().cpu().numpy()
        for inp, a in zip(session.get_inputs(), args, strict=True)
    }
    got = session.run(None, feeds)
    device = next((t.device for t in [*model.parameters(), *model.buffers()]), None)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            ref = _flatten(model(*(a.to(device) if device is not None else a for a in args)))
    finally:
        for m, mode in modes:
            m.training = mode
    if len(got) != len(ref):
        raise ValueError(f"{path}: ONNX gives {len(got)} outputs, PyTorch {len(ref)}")
    worst = 0.0
    for i, (g, r) in enumerate(zip(got, ref, strict=True)):
        r = r.detach().cpu().numpy()
        if g.shape != r.shape:
            raise ValueError(
                f"{path}: output {i} has shape {g.shape} in ONNX, {r.shape} in PyTorch"
            )
        if r.size:
            worst = max(worst, float(np.max(np.abs(g.astype(np.float64) - r.astype(np.float64)))))
    if worst > atol:
        raise ValueError(f"{path}: ONNX output differs from PyTorch by {worst:.3g} > atol={atol:g}")
    return worst
