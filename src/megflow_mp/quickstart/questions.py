"""The questions of the dialog and the checks behind them (MegFlow's order and defaults).

Contracts
---------
* :func:`check_root`: the project directory, ``~`` expanded, made absolute. Refused: an existing
  file, an existing directory that is not empty, a directory that cannot be created (the nearest
  existing parent is a file or is not writable). Nothing is created here.
* :func:`check_kind`: one of :data:`KINDS`, case-insensitive.
* :func:`inspect_model`: an existing ``.mge`` or ``.onnx`` file, loaded with the engine's own
  backends (:func:`megflow_mp.models.load_model`) to read its input name, shape and dtype. A file
  the backend rejects is refused with the backend's reason; when the backend library itself is
  missing here, the model is accepted uninspected (:attr:`ModelInfo.input_name` is ``None``) and the
  note says what to install where the project runs.
* :func:`check_tensor_name`: any non-empty name; whether the model has it is decided once the model
  is known (see :mod:`.dialog`).
* :func:`check_labels`, :func:`check_port`, :func:`check_yes_no`: a readable label file (absolute),
  a TCP port 1..65535, yes/no.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .asker import BadAnswer, Question

__all__ = ["KINDS", "ModelInfo", "check_root", "check_kind", "check_tensor_name", "inspect_model", "check_labels",
           "check_port", "check_yes_no", "ROOT", "KIND", "INPUT_NAME", "MODEL", "BRANCH", "RETRY"]

KINDS = ("modelserving", "image", "video", "custom")
MODEL_SUFFIXES = (".mge", ".onnx")


def check_root(text: str) -> Path:
    """The absolute project directory ``text`` names, if a project can be created there."""
    if not text.strip():
        raise BadAnswer("the path is empty")
    path = Path(os.path.expanduser(text.strip())).absolute()
    if path.exists():
        if not path.is_dir():
            raise BadAnswer(f"{path} exists and is not a directory")
        if any(path.iterdir()):
            raise BadAnswer(f"{path} exists and is not empty; choose a new or an empty directory")
        parent = path
    else:
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise BadAnswer(f"cannot create {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadAnswer(f"cannot create {path}: {parent} is not writable")
    return path


def check_kind(text: str) -> str:
    kind = text.strip().lower()
    if kind not in KINDS:
        raise BadAnswer(f"unknown project type {text.strip()!r}; expected one of {', '.join(KINDS)}")
    return kind


def check_tensor_name(text: str) -> str:
    name = text.strip()
    if not name:
        raise BadAnswer("the tensor name is empty")
    return name


@dataclass(frozen=True)
class ModelInfo:
    """What the model file declares. ``input_name``/``input_shape``/``dtype`` are ``None`` when the
    backend library is missing here (``note`` says so); ``input_shape`` has ``None`` for open axes."""

    path: Path
    input_name: str | None = None
    input_shape: tuple | None = None
    dtype: str | None = None
    outputs: tuple[str, ...] = ()
    backend: str = ""
    note: str = ""


def inspect_model(text: str) -> ModelInfo:
    """The model file ``text`` names, loaded once to read its input; see the module contract."""
    from ..errors import ModelError
    from ..models.backend import MEGENGINE_INSTALL, ONNXRUNTIME_INSTALL, load_model

    if not text.strip():
        raise BadAnswer("the model path is empty")
    path = Path(os.path.expanduser(text.strip())).absolute()
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise BadAnswer(f"{path.name}: a model is a .mge (MegEngine) or .onnx (ONNX) file")
    if not path.is_file():
        raise BadAnswer(f"{path}: no such file")
    try:
        model = load_model(path)
    except ModelError as e:
        reason = str(e)
        if MEGENGINE_INSTALL in reason or ONNXRUNTIME_INSTALL in reason:  # the library, not the file
            return ModelInfo(path, note=f"not inspected: {reason}")
        raise BadAnswer(reason) from None
    return ModelInfo(path, model.input_name, tuple(model.input_shape), str(model.dtype), tuple(model.output_names),
                     model.backend)


def check_labels(text: str) -> Path:
    """An existing, non-empty label file (one class name a line), made absolute."""
    from ..errors import ModelError
    from ..models.labels import load_labels

    path = Path(os.path.expanduser(text.strip())).absolute()
    try:
        load_labels(path)
    except ModelError as e:
        raise BadAnswer(str(e)) from None
    return path


def check_port(text: str) -> int:
    try:
        port = int(str(text).strip())
    except ValueError:
        raise BadAnswer(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise BadAnswer(f"{port} is not a TCP port (1..65535)")
    return port


def check_yes_no(text: str) -> bool:
    answer = text.strip().lower()
    if answer in ("y", "yes"):
        return True
    if answer in ("n", "no"):
        return False
    raise BadAnswer("answer y or n")


ROOT = Question("Enter the root fullpath for the project.", "megflow-app", check_root, "--path")
KIND = Question("Enter project type, modelserving/image/video/custom?", "modelserving", check_kind, "--type")
INPUT_NAME = Question("Enter model input tensor name.", "data", check_tensor_name, "--input-name")
MODEL = Question("Enter model fullpath.", "model.mge", inspect_model, "--model")
BRANCH = Question("Enter the template branch name.", "", str.strip, "--branch", shown="the repository's default")
RETRY = Question("Retry?", "n", check_yes_no, shown="y/N")
