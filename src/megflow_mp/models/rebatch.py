"""Real batches for ONNX graphs that fix their batch size: the batch axis made symbolic, in memory.

The shipped ``.onnx`` files declare ``N = 1`` (see ``backend``), so a batch normally runs as N
single inferences. Most of these graphs compute each sample on its own and only *declare* the 1;
rewritten with a symbolic ``N`` they take a whole batch in one call, which saves per-call overhead
and lets the convolutions work on several images at once.

Contracts
---------
* :func:`symbolic_batch` takes the bytes of an ONNX model whose first input has a fixed batch size
  ``n`` and returns the bytes of the rewritten model; the file itself is never touched. The
  rewrite: the first axis of every graph input and output becomes the symbolic ``N``; the recorded
  intermediate shapes (``value_info``) are dropped (onnxruntime infers them again); every
  ``Reshape`` fed (directly or not) by an input, whose target shape is a constant starting with
  ``n``, gets ``0`` there ("copy the input's first axis"). Nothing else is changed, so a graph that
  ties samples together some other way may still mix them: the rewrite alone proves nothing.
* :func:`batch_mismatch` is that proof: it runs a few different random samples as one batch
  through the rewritten session and one by one through the original, and says how far apart the
  outputs are (``None`` when they agree). Only a rewrite that passes is used (``backend`` falls back
  to chunked runs otherwise, and says why in ``Model.batching_note``).
* Both need the ``onnx`` package, imported only here; without it :class:`RebatchError` says what to
  install. Any graph the rewrite cannot handle is a :class:`RebatchError` naming the reason.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import RebatchError

__all__ = ["RebatchError", "symbolic_batch", "batch_mismatch", "ONNX_INSTALL", "PROBE_SAMPLES"]

ONNX_INSTALL = 'pip install onnx "numpy<2"'
PROBE_SAMPLES = 3  # odd and > 2: a graph that pairs or reverses samples shows it
TOLERANCE = 1e-4   # of the largest output value (at least 1): batched vs single runs


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except Exception as e:  # ImportError, or onnx built against another numpy
        raise RebatchError(f"the onnx package is needed to batch a graph that fixes N ({type(e).__name__}: {e}); "
                           f"install it with: {ONNX_INSTALL}") from None
    return onnx, numpy_helper


def _downstream(graph, name: str) -> set[str]:
    """Names of every tensor computed (directly or not) from the tensor ``name``."""
    seen = {name}
    for node in graph.node:  # ONNX graphs are stored in topological order
        if any(i in seen for i in node.input):
            seen.update(node.output)
    return seen


def symbolic_batch(model_bytes: bytes, symbol: str = "N") -> bytes:
    """The model of ``model_bytes`` with its fixed batch axis replaced by ``symbol`` (see the module doc)."""
    onnx, numpy_helper = _onnx()
    try:
        model = onnx.load_model_from_string(model_bytes)
    except Exception as e:
        raise RebatchError(f"not an ONNX model: {str(e).splitlines()[0]}") from None
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if not inputs:
        raise RebatchError("the graph has no input")
    dims = inputs[0].type.tensor_type.shape.dim
    if not dims or not dims[0].HasField("dim_value"):
        raise RebatchError("the first input has no fixed batch axis to replace")
    n = dims[0].dim_value
    for value in list(inputs) + list(graph.output):
        vdims = value.type.tensor_type.shape.dim
        if not vdims or not vdims[0].HasField("dim_value") or vdims[0].dim_value != n:
            raise RebatchError(f"{value.name!r} does not start with the batch axis of {n}")
        vdims[0].dim_param = symbol  # clears dim_value (a oneof)
    del graph.value_info[:]
    fed = set()
    for value in inputs:
        fed |= _downstream(graph, value.name)
    shapes = {t.name: t for t in graph.initializer}
    shapes.update({node.output[0]: node.attribute[0].t for node in graph.node
                   if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"})
    for k, node in enumerate(graph.node):
        if node.op_type != "Reshape" or node.input[0] not in fed or node.input[1] not in shapes:
            continue
        if any(a.name == "allowzero" and a.i for a in node.attribute):
            continue  # 0 would mean a real 0 there
        target = numpy_helper.to_array(shapes[node.input[1]]).copy()
        if target.ndim == 1 and target.size and target[0] == n:
            target[0] = 0
            name = f"{node.input[1]}__batch_{k}"  # a tensor of its own: others may share the old one
            graph.initializer.append(numpy_helper.from_array(target, name))
            node.input[1] = name
    return model.SerializeToString()


def batch_mismatch(batched: Callable[[np.ndarray], list], single: Callable[[np.ndarray], list],
                   sample_shape: tuple[int, ...], dtype, samples: int = PROBE_SAMPLES) -> str | None:
    """Run ``samples`` different random inputs as one batch through ``batched`` and one by one
    through ``single`` (each returns the list of outputs); ``None`` when every output agrees within
    :data:`TOLERANCE`, else a sentence saying where they differ. Exceptions propagate."""
    rng = np.random.default_rng(0)
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        x = rng.integers(0, 100, (samples, *sample_shape)).astype(dtype)
    else:
        x = rng.standard_normal((samples, *sample_shape)).astype(dtype)
    together = batched(x)
    alone = [np.concatenate(outs) for outs in zip(*(single(x[i:i + 1]) for i in range(samples)))]
    if len(together) != len(alone):
        return f"{len(together)} outputs for a batch, {len(alone)} one by one"
    for k, (a, b) in enumerate(zip(together, alone)):
        if a.shape != b.shape:
            return f"output {k} has shape {a.shape} for a batch of {samples}, {b.shape} one by one"
        diff = float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
        scale = max(1.0, float(np.max(np.abs(b))) if b.size else 0.0)
        if not diff <= TOLERANCE * scale:
            return f"output {k} of a batch differs from single runs by up to {diff:.3g} (largest value {scale:.3g})"
    return None
