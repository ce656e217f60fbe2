"""Label files: one class name per line, line ``i`` naming class ``i``.

Contracts
---------
* Paths are absolute, or relative to a ``root`` directory (the current directory by default). App
  configs name models and labels as ``models/...`` relative to the app, where ``models`` is the
  repository's link to ``../shared/models`` (``make models``); the files live in ``models/labels``.
* :func:`labels_near` finds the default label file of a model file: ``labels/<name>`` next to the
  model or one directory up (``models/yolox_nano.onnx`` and ``models/mge/yolox_nano.mge`` both use
  ``models/labels``).
* A missing file is a :class:`~megflow_mp.models.backend.ModelError` naming every place looked at.
  Trailing blank lines are dropped; lines are stripped of surrounding whitespace; a blank line inside
  the file is kept as an empty label (indices must not shift).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError

__all__ = ["COCO_LABELS", "IMAGENET_LABELS", "resolve", "load_labels", "labels_near", "as_labels"]

COCO_LABELS = "labels/coco_classes.txt"  # 80 COCO classes, YOLOX order (person=0, cat=15)
IMAGENET_LABELS = "labels/imagenet_labels.txt"  # 1001 ImageNet classes, index 0 = background


def resolve(path, root=None) -> Path:
    """``path`` if absolute, else ``root / path`` (``root`` defaults to the current directory)."""
    p = Path(path)
    if p.is_absolute():
        return p
    return Path(root) / p if root is not None else p


def load_labels(path, root=None) -> list[str]:
    """Read a label file (see :func:`resolve` for ``root``)."""
    p = resolve(path, root)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ModelError(f"{p}: label file not found") from None
    except OSError as e:
        raise ModelError(f"{p}: cannot read label file: {e}") from None
    labels = [line.strip() for line in lines]
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise ModelError(f"{p}: label file is empty")
    return labels


def labels_near(model_path, relpath: str) -> list[str]:
    """Load ``relpath`` (e.g. :data:`COCO_LABELS`) from the model's directory or the one above it."""
    here = Path(model_path).resolve().parent if Path(model_path).exists() else Path(model_path).parent
    places = [here / relpath, here.parent / relpath]
    for p in places:
        if p.is_file():
            return load_labels(p)
    raise ModelError(f"{model_path}: no label file {relpath!r}; looked at " + ", ".join(map(str, places))
                     + " (pass the labels explicitly)")


def as_labels(labels, model_path, default: str, expected: int | None = None) -> list[str]:
    """Normalise a ``labels``/``classes`` argument: ``None`` (the default file near the model), a path
    to a label file, or a sequence of names. ``expected`` checks the count."""
    if labels is None:
        out = labels_near(model_path, default)
    elif isinstance(labels, (str, Path)):
        out = load_labels(labels)
    else:
        out = [str(x) for x in labels]
    if expected is not None and len(out) != expected:
        raise ModelError(f"{model_path}: expected {expected} labels, got {len(out)}")
    return out
