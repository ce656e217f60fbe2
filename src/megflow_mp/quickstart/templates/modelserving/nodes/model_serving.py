"""##PROJECT_NAME##: ServeModel, one model behind ImageServer.

Input ``msg``: ``{'data': HxWx3 BGR uint8, 'extra_data': str}`` (what ImageServer sends). Output:
the envelope repacked with a JSON string (ImageServer, ``response = "json"``, answers it as is)::

    {"extra_data": "my_image",
     "input": {"name": "data", "shape": [1, 3, 224, 224], "layout": "NCHW"},
     "outputs": [{"name": "prob", "shape": [1, 1000], "values": [...], "truncated": false}],
     "topk": [{"index": 285, "label": "Egyptian cat", "score": 0.87}, ...]}    # only with `labels`

Args (config.toml): ``model`` (.onnx: onnxruntime, .mge: megenginelite), ``input_name`` (must be
the input the backend feeds), ``channels`` ("BGR"/"RGB"), ``mean``/``std`` (3 numbers, or 1),
``size`` ([h, w], only for a model that leaves them open), ``labels`` (a label file; "" for
none), ``topk``, ``max_values``, ``device``, ``threads``. Relative paths are relative to this
file's directory. Pre-processing: resize to the model's input size, channel order, (x - mean) / std,
the model's layout (NCHW or NHWC, read from the file) and dtype. ``topk`` ranks the first output
that is a vector of as many scores as the label file has lines; the node checks at start that
there is one. Any bad arg or model fails the node at start, naming it.
"""

import json
from pathlib import Path

import numpy as np
from megflow_mp import register
from megflow_mp.models import load_labels, load_model
from megflow_mp.models.images import resize, to_bgr

HERE = Path(__file__).resolve().parent
GREY = np.array([0.114, 0.587, 0.299], np.float32)  # BGR weights


def project_path(path) -> Path:
    """``path`` as is when absolute, else relative to this project's directory."""
    p = Path(str(path)).expanduser()
    return p if p.is_absolute() else HERE / p


def image_layout(shape, size=None):
    """``(layout, channels, height, width)`` of an image input ``shape`` (batch axis included)."""
    if len(shape) != 4:
        raise ValueError(f"expected an image input (N, C, H, W) or (N, H, W, C), the model declares {shape}")
    if shape[1] in (1, 3) or (shape[1] is None and shape[3] not in (1, 3)):
        layout, c, h, w = "NCHW", shape[1] or 3, shape[2], shape[3]
    elif shape[3] in (1, 3):
        layout, c, h, w = "NHWC", shape[3], shape[1], shape[2]
    else:
        raise ValueError(f"expected 1 or 3 channels, the model declares {shape}")
    if h is None or w is None:
        if not size or len(size) != 2:
            raise ValueError(f"the model leaves its input size open {shape}: set size = [height, width]")
        h, w = int(size[0]), int(size[1])
    return layout, c, h, w


def per_channel(name, value, channels):
    a = np.asarray(value, np.float32).reshape(-1)
    if a.size not in (1, 3) or (a.size == 3 and channels == 1):
        raise ValueError(f"{name} must be 1 number or 3 (one per channel), got {value!r}")
    return a[:channels] if a.size == 3 else np.repeat(a, channels)


@register(inputs=["inp"], outputs=["out"])
class ServeModel:
    def __init__(self, name, args):
        self.name = name
        if not args.get("model"):
            raise ValueError(f"node {name!r}: arg 'model' (a .onnx or .mge file) is required")
        threads = int(args.get("threads", 0)) or None
        self.model = load_model(project_path(args["model"]), device=args.get("device", "cpu"), threads=threads)
        want = args.get("input_name")
        if want and want != self.model.input_name:
            raise ValueError(f"node {name!r}: input_name is {want!r} but the model's input is "
                             f"{self.model.input_name!r}")
        self.layout, self.c, self.h, self.w = image_layout(self.model.input_shape, args.get("size"))
        self.channels = str(args.get("channels", "BGR")).upper()
        if self.channels not in ("BGR", "RGB"):
            raise ValueError(f"node {name!r}: channels must be 'BGR' or 'RGB', got {self.channels!r}")
        self.mean = per_channel("mean", args.get("mean", 0.0), self.c)
        self.std = per_channel("std", args.get("std", 1.0), self.c)
        if np.any(self.std == 0):
            raise ValueError(f"node {name!r}: std must not be 0, got {args.get('std')!r}")
        self.max_values = int(args.get("max_values", 10000))
        self.topk = int(args.get("topk", 5))
        self.labels = load_labels(project_path(args["labels"])) if args.get("labels") else None
        outputs = self.model.infer(self.preprocess(np.zeros((self.h, self.w, 3), np.uint8)))  # warm-up
        self.scores = None
        if self.labels is not None:
            self.scores = next((i for i, o in enumerate(outputs) if o.size == len(self.labels)
                                and max(o.shape) == o.size), None)
            if self.scores is None:
                shapes = ", ".join(f"{n} {tuple(o.shape)}" for n, o in zip(self.model.output_names, outputs))
                raise ValueError(f"node {name!r}: the label file has {len(self.labels)} lines but no output is "
                                 f"a vector of that many scores ({shapes})")

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """The model's input (batch axis of 1) from an ``HxWx3`` BGR image."""
        x = resize(to_bgr(image), self.w, self.h).astype(np.float32)
        if self.c == 1:
            x = (x @ GREY)[:, :, None]
        elif self.channels == "RGB":
            x = x[:, :, ::-1]
        x = (x - self.mean) / self.std
        if self.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x[None]).astype(self.model.dtype)

    def describe(self, name: str, out: np.ndarray) -> dict:
        flat = out.reshape(-1)
        values = flat[: self.max_values].astype(np.float64).tolist() if flat.dtype.kind == "f" else \
            flat[: self.max_values].tolist()
        return {"name": name, "shape": list(out.shape), "values": values, "truncated": flat.size > self.max_values}

    def exec(self):
        envelope = self.inp.recv()
        if envelope is None:
            return
        msg = envelope.msg
        outputs = self.model.infer(self.preprocess(msg["data"]))
        model = self.model
        result = {"extra_data": msg.get("extra_data"),
                  "input": {"name": model.input_name, "shape": list(model.input_shape), "layout": self.layout},
                  "outputs": [self.describe(n, o) for n, o in zip(self.model.output_names, outputs)]}
        if self.scores is not None:
            row = outputs[self.scores].reshape(-1)
            top = np.argsort(-row, kind="stable")[: self.topk]
            result["topk"] = [{"index": int(i), "label": self.labels[i], "score": float(row[i])} for i in top]
        self.out.send(envelope.repack(json.dumps(result)))
