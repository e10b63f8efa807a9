"""A small ground truth and detections that the format tests write and read back."""

from scnn.records import Detection, GroundTruth, Instance

GT = GroundTruth(
    classes=("Diving", "HighJump"),
    instances=(
        Instance("video_a", 1.5, 4.25, "Diving"),
        Instance("video_a", 10.0, 12.0, "HighJump"),
        Instance("video_b", 0.0, 3.1, "Diving"),
    ),
    ambiguous=(Instance("video_b", 5.0, 6.0, "Ambiguous"),),
    videos=("video_a", "video_b"),
    subsets={"video_a": "val", "video_b": "val"},
)
DETECTIONS = [
    Detection("video_a", 1.25, 4.0, "Diving", 0.912345678),
    Detection("video_b", 7.0, 9.5, "HighJump", 0.5),
]
