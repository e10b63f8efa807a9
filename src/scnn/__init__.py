"""scnn: Segment-CNN temporal action localization in untrimmed videos.

Example::

    import scnn

    detector = scnn.Detector.load()  # the bundled model, or a `scnn train` directory
    for d in detector("video.mp4"):
        print(d.label, d.start_s, d.end_s, d.score)
"""

from scnn.detect import Detector
from scnn.errors import ScnnError
from scnn.evaluate import EvaluationResult, evaluate
from scnn.formats import load_detections, load_ground_truth
from scnn.modelfile import load_model
from scnn.records import Detection, GroundTruth, Instance

__all__ = [
    "Detection",
    "Detector",
    "EvaluationResult",
    "GroundTruth",
    "Instance",
    "ScnnError",
    "evaluate",
    "load_detections",
    "load_ground_truth",
    "load_model",
]
__version__ = "0.1.0"
