"""Loading a network file and running it: megenginelite for ``.mge``, onnxruntime for ``.onnx``.

Contracts
---------
* :func:`load_model` picks the backend from the file extension. ``.mge`` runs on megenginelite
  (input tensor ``data``, or the only input), ``.onnx`` on onnxruntime (the graph's first input).
  Both libraries are imported lazily, when the first file of their kind is loaded, so the rest of the
  engine never needs them; a missing library is a :class:`ModelError` that says what to install.
* ``device`` is ``"cpu"`` or ``"gpu"`` (``"cuda"`` is an alias). A GPU is used when one is usable
  (CUDAExecutionProvider first for onnxruntime, ``LITE_CUDA`` for megenginelite); otherwise the model
  falls back to the CPU and :attr:`Model.device` says ``"cpu"``. ``threads`` sets the CPU threads of
  one inference (``intra_op_num_threads`` / ``threads_number``); ``None`` keeps the library default.
* :meth:`Model.infer` runs one sample: ``x`` has the model's input shape with a leading batch axis
  of 1, or without it. :meth:`Model.infer_batch` runs ``N >= 1`` samples (batch axis first). Both
  return the list of outputs, each with a leading axis of the batch size (1 for ``infer``), as fresh
  arrays the caller owns.
* Batching: a model whose declared batch size is a fixed number (all the shipped models declare 1:
  the ONNX graphs fix ``N=1``, and the ``.mge`` traces bake ``N=1`` into their reshapes, which makes
  larger batches fail or, for YOLOX, silently mix samples) is run in chunks of that size and the
  outputs are concatenated. A dynamic ``N`` (a symbolic ONNX dimension, or ``dynamic_batch=True``)
  sends the whole batch in one call; an output whose first axis is not ``N`` is then a ModelError.
  ``rebatch=True`` asks for real batches from an ``.onnx`` graph that fixes ``N``: the graph is given
  a symbolic ``N`` in memory (:mod:`.rebatch`, needs the ``onnx`` package) and used only if a probe
  batch gives the same outputs as single runs; otherwise the model runs in chunks. Either way
  :attr:`Model.batching` says what happens (``"dynamic"``, ``"rebatched"`` or ``"chunked"``) and
  :attr:`Model.batching_note` why a requested rebatch was not used. ``.mge`` traces cannot be rebatched.
* Every input is checked before it reaches the backend: ``np.ndarray``, the model's dtype, the
  model's rank and non-batch dimensions. A mismatch is a :class:`ModelError` naming expected vs got.
* A :class:`Model` serialises its own calls (a lock), so threads may share one; processes each load
  their own.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelError

__all__ = ["ModelError", "Model", "load_model", "MEGENGINE_INSTALL", "ONNXRUNTIME_INSTALL"]

MEGENGINE_INSTALL = 'pip install "megengine==1.13.0" "numpy<2" "opencv-python<4.12"'
ONNXRUNTIME_INSTALL = "pip install onnxruntime"

log = logging.getLogger("megflow_mp")
_ONNX_DTYPES = {f"tensor({k})": np.dtype(v) for k, v in [("float", "float32"), ("float16", "float16"), (
    "double", "float64"), ("uint8", "uint8"), ("int8", "int8"), ("int32", "int32"), ("int64", "int64")]}


def _shape_str(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


class Model:
    """One loaded network with a single input. Subclasses implement :meth:`_load` and :meth:`_run`.

    Attributes: ``path``, ``backend`` (``"megenginelite"`` or ``"onnxruntime"``), ``device``
    (``"cpu"``/``"gpu"``, the one really used), ``input_name``, ``input_shape`` (declared, batch axis
    included; ``None`` for a dynamic dimension), ``dtype`` (numpy dtype of the input), ``batch`` (the
    declared batch size, ``None`` when dynamic), ``output_names``, ``batching`` (``"dynamic"``: whole
    batches in one call; ``"rebatched"``: the same, for a graph given a symbolic ``N``; ``"chunked"``:
    runs of ``batch`` samples), ``batching_note`` (why ``rebatch`` was not used, else ``""``).
    """

    backend = ""

    def __init__(self, path: Path, device: str, device_id: int, threads: int | None, dynamic_batch: bool,
                 rebatch: bool = False):
        self.path = path
        self.device = device
        self.input_name = ""
        self.input_shape: tuple[int | None, ...] = ()
        self.dtype = np.dtype(np.float32)
        self.output_names: list[str] = []
        self._lock = threading.Lock()
        self._load(device_id, threads)
        self.batching, self.batching_note = "dynamic", ""
        fixed = bool(self.input_shape) and self.input_shape[0] is not None and not dynamic_batch
        if rebatch and fixed:
            why = self._rebatch()
            if why is None:
                self.batching, self.input_shape = "rebatched", (None,) + tuple(self.input_shape[1:])
            else:
                self.batching_note = f"not rebatched: {why}"
                log.info("%s: %s; batches run in chunks of %s", path, self.batching_note, self.input_shape[0])
        self.batch = None if dynamic_batch or not self.input_shape else self.input_shape[0]
        if self.batch is not None:
            self.batching = "chunked"

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.path.name} {self.backend}/{self.device} "
                f"input {self.input_name}{_shape_str(self.input_shape)} {self.dtype}>")

    # -- public -------------------------------------------------------------------------------------
    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one sample (``x`` with or without its batch axis of 1); outputs keep a batch axis of 1."""
        if isinstance(x, np.ndarray) and self.input_shape and x.ndim == len(self.input_shape) - 1:
            x = x[None]
        self._check(x)
        if x.shape[0] != 1:
            raise ModelError(f"{self.path}: infer() takes one sample, got a batch of {x.shape[0]}; "
                             f"use infer_batch()")
        return self.infer_batch(x)

    def infer_batch(self, x: np.ndarray) -> list[np.ndarray]:
        """Run ``N >= 1`` samples (batch axis first); every output has a leading axis of ``N``."""
        self._check(x)
        n = x.shape[0]
        x = np.ascontiguousarray(x)
        step = self.batch or n
        parts = []
        with self._lock:
            for i in range(0, n, step):
                chunk = x[i:i + step]
                if chunk.shape[0] != step and self.batch is not None:  # last, short chunk: pad with copies
                    pad = np.concatenate([chunk] + [chunk[-1:]] * (step - chunk.shape[0]))
                    outs = [o[:chunk.shape[0]] for o in self._run(pad)]
                else:
                    outs = self._run(chunk)
                for o in outs:
                    if o.ndim == 0 or o.shape[0] != chunk.shape[0]:
                        raise ModelError(f"{self.path}: output of shape {o.shape} for a batch of "
                                         f"{chunk.shape[0]}: this model does not take batches of that size")
                parts.append(outs)
        if len(parts) == 1:
            return parts[0]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    # -- helpers ------------------------------------------------------------------------------------
    def _check(self, x) -> None:
        if not isinstance(x, np.ndarray):
            raise ModelError(f"{self.path}: input must be a numpy array, got {type(x).__name__}")
        if x.dtype != self.dtype:
            raise ModelError(f"{self.path}: input {self.input_name!r} expects dtype {self.dtype}, got {x.dtype}")
        want = self.input_shape
        bad = x.ndim != len(want) or x.shape[0] < 1 or any(
            w is not None and w != g for w, g in zip(want[1:], x.shape[1:]))
        if bad:
            raise ModelError(f"{self.path}: input {self.input_name!r} expects shape {_shape_str((None,) + want[1:])}, "
                             f"got {tuple(x.shape)}")

    def _no_gpu(self, why: str) -> None:
        """``device = "gpu"`` asked for, no GPU usable: run on the CPU and say so once."""
        log.warning("%s: device = \"gpu\" but %s; running on the CPU", self.path, why)
        self.device = "cpu"

    def _rebatch(self) -> str | None:
        """Make the loaded graph, which fixes ``N``, take any batch size: ``None`` when done, else why not."""
        return f"{self.backend} models cannot be rebatched (only .onnx graphs can)"

    def _load(self, device_id: int, threads: int | None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(self, x: np.ndarray) -> list[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError


class LiteModel(Model):
    """A ``.mge`` file on megenginelite."""

    backend = "megenginelite"

    def _load(self, device_id: int, threads: int | None) -> None:
        try:
            import megenginelite as lite
        except Exception as e:  # ImportError, or megengine built against another numpy
            raise ModelError(f"{self.path}: running .mge models needs megenginelite, which comes with MegEngine "
                             f"({type(e).__name__}: {e}); install it with: {MEGENGINE_INSTALL}") from None
        device_type = lite.LiteDeviceType.LITE_CPU
        if self.device == "gpu":
            try:
                has_gpu = lite.LiteGlobal.get_device_count(lite.LiteDeviceType.LITE_CUDA) > 0
            except Exception:
                has_gpu = False
            device_type = lite.LiteDeviceType.LITE_CUDA if has_gpu else device_type
            if not has_gpu:
                self._no_gpu("megenginelite sees no CUDA device")
        try:
            net = lite.LiteNetwork(config=lite.LiteConfig(device_type=device_type))
            if self.device == "gpu":
                net.device_id = device_id
            if threads and self.device == "cpu":
                net.threads_number = int(threads)  # must precede load()
            net.load(str(self.path))
        except Exception as e:
            raise ModelError(f"{self.path}: megenginelite cannot load it: {str(e).splitlines()[0]}") from None
        inputs = list(net.get_all_input_name())
        if "data" not in inputs and len(inputs) != 1:
            raise ModelError(f"{self.path}: expected an input named 'data' (or a single input), got {inputs}")
        self.input_name = "data" if "data" in inputs else inputs[0]
        layout = net.get_io_tensor(self.input_name).layout
        self.input_shape = tuple(int(d) for d in layout.shapes[:layout.ndim])
        self.dtype = np.dtype(lite.lite_dtype_2_numpy(lite.LiteDataType(layout.data_type)))
        self.output_names = list(net.get_all_output_name())
        self._net = net

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        net = self._net
        try:
            net.get_io_tensor(self.input_name).set_data_by_copy(x)  # takes x's layout (dynamic shapes)
            net.forward()
            net.wait()
            return [net.get_io_tensor(name).to_numpy() for name in self.output_names]  # to_numpy copies
        except Exception as e:
            raise ModelError(f"{self.path}: megenginelite failed on input {tuple(x.shape)}: "
                             f"{str(e).splitlines()[0]}") from None


class OrtModel(Model):
    """A ``.onnx`` file on onnxruntime."""

    backend = "onnxruntime"

    def _load(self, device_id: int, threads: int | None) -> None:
        try:
            import onnxruntime as ort
        except Exception as e:
            raise ModelError(f"{self.path}: running .onnx models needs onnxruntime ({type(e).__name__}: {e}); "
                             f"install it with: {ONNXRUNTIME_INSTALL}") from None
        providers: list = ["CPUExecutionProvider"]
        if self.device == "gpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(device_id)}))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only
        if threads:
            opts.intra_op_num_threads = int(threads)
        self._session_args = {"sess_options": opts, "providers": providers}
        try:
            sess = ort.InferenceSession(str(self.path), **self._session_args)
        except Exception as e:
            raise ModelError(f"{self.path}: onnxruntime cannot load it: {str(e).splitlines()[0]}") from None
        if self.device == "gpu" and "CUDAExecutionProvider" not in sess.get_providers():
            if "CUDAExecutionProvider" in ort.get_available_providers():
                self._no_gpu("onnxruntime's CUDA provider did not start (no GPU, or CUDA 12 / cuDNN 9 "
                             "libraries missing: see onnxruntime's error above)")
            else:
                self._no_gpu(f"this onnxruntime has no CUDA provider (install onnxruntime-gpu; it has "
                             f"{', '.join(ort.get_available_providers())})")
        inp = sess.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        if inp.type not in _ONNX_DTYPES:
            raise ModelError(f"{self.path}: unsupported input type {inp.type}")
        self.dtype = np.dtype(_ONNX_DTYPES[inp.type])
        self.output_names = [o.name for o in sess.get_outputs()]
        self._sess = sess

    def _rebatch(self) -> str | None:
        import onnxruntime as ort

        from ..errors import RebatchError
        from .rebatch import batch_mismatch, symbolic_batch

        original = self._sess
        try:
            sess = ort.InferenceSession(symbolic_batch(self.path.read_bytes()), **self._session_args)
            self._sess = sess
            why = batch_mismatch(self._run, lambda x: self._run_on(original, x), self.input_shape[1:], self.dtype)
        except (RebatchError, ModelError) as e:
            why = str(e)
        except Exception as e:  # onnxruntime refusing the rewritten graph
            why = f"onnxruntime cannot run the rewritten graph: {str(e).splitlines()[0]}"
        if why is not None:
            self._sess = original
        return why

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return self._run_on(self._sess, x)

    def _run_on(self, sess, x: np.ndarray) -> list[np.ndarray]:
        try:
            return list(sess.run(self.output_names, {self.input_name: x}))
        except Exception as e:
            raise ModelError(f"{self.path}: onnxruntime failed on input {tuple(x.shape)}: "
                             f"{str(e).splitlines()[0]}") from None


_BACKENDS = {".mge": LiteModel, ".onnx": OrtModel}


def load_model(path, device: str = "cpu", device_id: int = 0, threads: int | None = None,
               dynamic_batch: bool = False, rebatch: bool = False) -> Model:
    """Load ``path`` (``.mge`` or ``.onnx``) for ``device`` (``"cpu"`` or ``"gpu"``).

    ``dynamic_batch=True`` declares that the network really accepts any batch size (only then is a
    whole batch sent in one call to a model whose file declares a fixed ``N``). ``rebatch=True`` tries
    to make such a ``.onnx`` graph take real batches, checked on a probe batch (see the module doc).
    Raises :class:`ModelError` for a missing file, an unknown extension, an unknown device, a missing
    backend library, or a file the backend rejects.
    """
    p = Path(path)
    kind = _BACKENDS.get(p.suffix.lower())
    if kind is None:
        raise ModelError(f"{p}: unknown model format {p.suffix!r}; expected one of {sorted(_BACKENDS)}")
    if not p.is_file():
        where = "" if p.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise ModelError(f"{p}: model file not found{where}: check the node's model path, or run from the directory "
                         f"it is relative to (`make models` links models/ in the source tree)")
    dev = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu"}.get(str(device).lower())
    if dev is None:
        raise ModelError(f"{p}: unknown device {device!r}; expected 'cpu' or 'gpu'")
    if threads is not None and (not isinstance(threads, int) or threads < 0):
        raise ModelError(f"{p}: threads must be a non-negative int or None, got {threads!r}")
    return kind(p, dev, int(device_id), threads, dynamic_batch, bool(rebatch))
