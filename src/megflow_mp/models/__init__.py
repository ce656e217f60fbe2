"""Real models behind the engine's AI nodes: YOLOX detection, MobileNetV2 classification, embeddings.

Each wrapper takes BGR ``HxWx3`` images (the engine's frames) and hides its pre- and post-processing;
:func:`load_model` runs a ``.mge`` file on megenginelite or an ``.onnx`` file on onnxruntime, both
imported only when such a file is loaded. Models live in ``models/`` (``make models`` links it to
``../shared/models``); see that folder's README for the files.
"""

from ..errors import ModelError
from .backend import Model, load_model
from .classify import Classifier
from .detect import Detection, Detector
from .embed import Embedder, cosine
from .labels import load_labels
from .track import IouTracker, Track, TrackUpdate, iou

__all__ = ["Model", "ModelError", "load_model", "Detector", "Detection", "Classifier", "Embedder", "cosine",
           "load_labels", "IouTracker", "Track", "TrackUpdate", "iou"]
