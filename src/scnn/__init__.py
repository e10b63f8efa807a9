"""scnn: Segment-CNN temporal action localization in untrimmed videos."""

from scnn.errors import ScnnError

__all__ = ["ScnnError"]
__version__ = "0.1.0"
