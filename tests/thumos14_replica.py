"""A miniature of what a THUMOS14 user downloads, as it unpacks: the validation and test
videos, their temporal annotations, UCF101, and the Sports-1M C3D Caffe file with its mean.

The names, folders, containers and codecs are the real ones (THUMOS14: H.264 MP4, some
validation videos at 30 fps; UCF101: MPEG-4 Part 2 in AVI, 320×240, 25 fps; annotation lines
``video_validation_0000051  72.8 76.4`` as the kit writes them; the C3D-v1.0 Caffe file of
the full-size network with its 487-way ``fc8-1``, random weights). The pixels are synthetic
and there are few, short videos, so a test runs the whole recipe of docs/thumos14.md on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from caffe_writer import c3d_arrays, write_caffemodel, write_mean
from videos import write_video

# The 20 classes in the kit's order (detclasslist.txt of the test annotations).
CLASSES = (
    "BaseballPitch",
    "BasketballDunk",
    "Billiards",
    "CleanAndJerk",
    "CliffDiving",
    "CricketBowling",
    "CricketShot",
    "Diving",
    "FrisbeeCatch",
    "GolfSwing",
    "HammerThrow",
    "HighJump",
    "JavelinThrow",
    "LongJump",
    "PoleVault",
    "Shotput",
    "SoccerPenalty",
    "TennisSwing",
    "ThrowDiscus",
    "VolleyballSpiking",
)
UCF101_OTHER_CLASS = "ApplyEyeMakeup"  # one of UCF101's 81 classes outside THUMOS14's 20
SPORTS1M_CLASSES = 487

# The folders as the downloads unpack.
VALIDATION = "validation"
VALIDATION_ANNOTATIONS = "TH14_Temporal_annotations_validation/annotation"
TEST_VIDEOS = "TH14_test_set_mp4"
TEST_ANNOTATIONS = "TH14_Temporal_Annotations_Test/annotations/annotation"
UCF101 = "UCF101/UCF-101"
SPORTS1M_WEIGHTS = "conv3d_deepnetA_sport1m_iter_1900000"
SPORTS1M_MEAN = "sport1m_train16_128_mean.binaryproto"

THUMOS_SIZE = (320, 180)  # width, height of THUMOS14's videos
UCF101_SIZE = (320, 240)
DURATION_S = 4.0
# (video, fps, {class: [(start s, end s)]}, ambiguous intervals); an unannotated validation
# video stands for the 810 of the 1010 that have no temporal annotation.
VALIDATION_VIDEOS = (
    ("video_validation_0000051", 30, {"BaseballPitch": [(0.5, 2.0)]}, [(3.0, 3.5)]),
    ("video_validation_0000052", 25, {"Billiards": [(1.0, 3.0)]}, []),
    ("video_validation_0000053", 30, {}, []),
)
TEST = (
    ("video_test_0000004", 25, {"BaseballPitch": [(1.0, 2.5)]}, [(3.2, 3.6)]),
    ("video_test_0000006", 30, {"Billiards": [(0.4, 2.4)]}, []),
)
UCF101_CLIPS = (  # (class, clip, frames): the last one is shorter than a 16-frame clip
    ("BaseballPitch", "v_BaseballPitch_g01_c01", 40),
    ("Billiards", "v_Billiards_g01_c01", 40),
    (UCF101_OTHER_CLASS, f"v_{UCF101_OTHER_CLASS}_g01_c01", 40),
    ("Billiards", "v_Billiards_g01_c02", 12),
)


def write_replica(root: Path, seed: int = 0) -> None:
    """Write the miniature downloads under ``root``."""
    rng = np.random.default_rng(seed)
    _write_split(root / VALIDATION, root / VALIDATION_ANNOTATIONS, "val", VALIDATION_VIDEOS, rng)
    _write_split(root / TEST_VIDEOS, root / TEST_ANNOTATIONS, "test", TEST, rng)
    for name, clip, frames in UCF101_CLIPS:
        folder = root / UCF101 / name
        folder.mkdir(parents=True, exist_ok=True)
        pictures = _pictures(frames, UCF101_SIZE, rng)
        write_video(folder / f"{clip}.avi", pictures, 25, codec="mpeg4", pix_fmt="yuv420p")
    weights = c3d_arrays(rng, SPORTS1M_CLASSES)
    write_caffemodel(root / SPORTS1M_WEIGHTS, weights, rename={"fc8": "fc8-1"})
    mean_bgr = rng.uniform(80, 120, (3, 16, 128, 171)).astype(np.float32)
    write_mean(root / SPORTS1M_MEAN, mean_bgr)


def _write_split(videos: Path, annotations: Path, subset: str, plan, rng) -> None:
    """Videos and the ``<Class>_<subset>.txt`` files of every class (empty for classes
    without an instance, as some are) and ``Ambiguous_<subset>.txt``."""
    videos.mkdir(parents=True)
    annotations.mkdir(parents=True)
    lines: dict[str, list[str]] = {name: [] for name in (*CLASSES, "Ambiguous")}
    for video, fps, instances, ambiguous in plan:
        pictures = _pictures(round(DURATION_S * fps), THUMOS_SIZE, rng)
        write_video(videos / f"{video}.mp4", pictures, fps)
        for name, segments in (*instances.items(), ("Ambiguous", ambiguous)):
            lines[name] += [f"{video}  {start:.1f} {end:.1f}\n" for start, end in segments]
    for name, text in lines.items():
        (annotations / f"{name}_{subset}.txt").write_text("".join(text))


def _pictures(count: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Moving noise: a random picture drifting one pixel a frame."""
    width, height = size
    base = rng.integers(0, 256, (height, width + count, 3), dtype=np.uint8)
    return np.stack([base[:, k : k + width] for k in range(count)])
