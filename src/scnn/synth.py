"""A synthetic untrimmed-video dataset: the offline default for training and checking scnn.

Each video shows one actor (a bar with a disc at one end, in a saturated colour) over a
textured background. Most of the time the actor rests, jittering slightly; during an action
instance it performs one of K motions: a full turn clockwise or anticlockwise, a traversal to the
right, left, up or down, growing or shrinking. Every class draws its shapes, colours and
positions from the same distributions, so no single frame tells the classes apart: only motion
over time does. A motion always covers the same total (one turn, half the frame, a 2.6x scale
change) however long the instance lasts (0.6-20 s, log-uniform), so the action is recognisable
at every window length.

Around the actions: drifting grey blobs, pixel noise, slow lighting changes, the actor jumping to
a new place between instances, and "false starts" (a motion begun and undone) that are
background. Videos are H.264 MP4 at 25 fps; the ground truth is written as ActivityNet JSON,
CSV and THUMOS14 folders.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from scnn.encode import write_h264
from scnn.errors import ScnnError
from scnn.formats import write_ground_truth
from scnn.records import GroundTruth, Instance
from scnn.video import FRAME_SIZE

CLASS_NAMES = (
    "RotateClockwise",
    "RotateAnticlockwise",
    "MoveRight",
    "MoveLeft",
    "Grow",
    "Shrink",
    "MoveUp",
    "MoveDown",
)
SPLITS = ("train", "val", "test")
ACTIVITYNET_SUBSETS = {"train": "training", "val": "validation", "test": "testing"}

MIN_GAP_S = 1.0  # background between (and around) action instances
ACTION_FRACTION_RANGE = (0.25, 0.45)  # share of each video covered by actions
FALSE_START_PROBABILITY = 0.4  # per gap long enough to hold one
FALSE_START_EXTENT = 0.3  # how far into its motion a false start gets before undoing it
FALSE_START_RANGE_S = (1.0, 3.0)

# actor geometry, as fractions of the frame height at scale 1
BAR_LENGTH = 0.30
BAR_HALF_THICKNESS = 0.04
DISC_RADIUS = 0.08
SCALE_RANGE = (0.55, 1.45)  # Grow goes from the first to the second, Shrink back
TRAVERSAL_X = (0.25, 0.75)  # MoveRight/MoveLeft span, as fractions of the width
TRAVERSAL_Y = (0.28, 0.72)  # MoveDown/MoveUp span, as fractions of the height
JITTER = 0.006  # standard deviation of the actor's position jitter per frame, x height
JITTER_RAD = math.radians(2.0)

NUM_BLOBS = 3
BLOB_SPEED_RANGE_PX_S = (3.0, 25.0)
NOISE_SIGMA = 5.0  # pixel noise, grey levels
NOISE_BANK = 16  # noise frames drawn once per video and reused in random order
LIGHTING_AMPLITUDE = 0.15  # brightness varies by +-15 %
LIGHTING_PERIOD_RANGE_S = (20.0, 60.0)
X264_CRF = 21.5  # libx264 quality; with MB-tree off, the fidelity crf 20 had with it (~33 dB PSNR)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. The defaults give a dataset a small C3D learns in minutes on a CPU."""

    num_classes: int = 6
    train_videos: int = 24
    val_videos: int = 6
    test_videos: int = 8
    duration_range_s: tuple[float, float] = (60.0, 120.0)
    instance_duration_range_s: tuple[float, float] = (0.6, 20.0)
    width: int = FRAME_SIZE[0]
    height: int = FRAME_SIZE[1]
    fps: float = 25.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.num_classes <= len(CLASS_NAMES):
            raise ScnnError(f"num_classes must be 1..{len(CLASS_NAMES)}, got {self.num_classes}")
        if min(self.train_videos, self.val_videos, self.test_videos) < 0:
            raise ScnnError("video counts must be >= 0")
        low_s, high_s = self.duration_range_s
        shortest_s, longest_s = self.instance_duration_range_s
        if not 0 < shortest_s <= longest_s:
            raise ScnnError(f"bad instance duration range {self.instance_duration_range_s} s")
        if not 2 * MIN_GAP_S + longest_s <= low_s <= high_s:
            raise ScnnError(
                f"video duration range {self.duration_range_s} s must be ordered and start at "
                f">= {2 * MIN_GAP_S + longest_s} s (longest instance plus gaps)"
            )
        if self.width < 32 or self.height < 32 or self.fps <= 0:
            raise ScnnError(
                f"frame size must be >= 32x32 and fps > 0, got {self.width}x"
                f"{self.height} at {self.fps}"
            )

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASS_NAMES[: self.num_classes]

    def videos(self, split: str) -> int:
        return {"train": self.train_videos, "val": self.val_videos, "test": self.test_videos}[split]


@dataclass(frozen=True)
class Motion:
    """Frames [start_frame, end_frame) during which the actor performs class ``label_index``'s
    motion; ``extent`` 1 is a whole action, less is a false start (done halfway and undone)."""

    start_frame: int
    end_frame: int
    label_index: int
    extent: float = 1.0


@dataclass(frozen=True)
class VideoPlan:
    """One video's timeline: its length, action instances and false starts, in frames."""

    name: str
    split: str
    num_frames: int
    actions: tuple[Motion, ...]
    false_starts: tuple[Motion, ...]


def plan_videos(config: SynthConfig) -> list[VideoPlan]:
    """Every video's timeline. Depends only on the timing fields and the seed, not on size."""
    plans = []
    for split_index, split in enumerate(SPLITS):
        for index in range(1, config.videos(split) + 1):
            rng = np.random.default_rng([config.seed, split_index, index, 0])
            plans.append(_plan_video(rng, f"synth_{split}_{index:04d}", split, config))
    return plans


def ground_truth(plans: list[VideoPlan], config: SynthConfig) -> GroundTruth:
    """The plans' action instances in seconds, with ActivityNet subsets and durations."""
    instances = tuple(
        Instance(
            plan.name,
            action.start_frame / config.fps,
            action.end_frame / config.fps,
            config.classes[action.label_index],
        )
        for plan in plans
        for action in plan.actions
    )
    return GroundTruth(
        classes=config.classes,
        instances=instances,
        videos=tuple(plan.name for plan in plans),
        durations_s={plan.name: plan.num_frames / config.fps for plan in plans},
        subsets={plan.name: ACTIVITYNET_SUBSETS[plan.split] for plan in plans},
    )


def generate(root: str | Path, config: SynthConfig, quiet: bool = False) -> GroundTruth:
    """Write ``root/videos/<name>.mp4`` and the ground truth in all three formats.

    ``root/annotations.json`` (ActivityNet, subsets training/validation/testing),
    ``root/annotations/{train,val,test}.csv`` and THUMOS14 files
    ``root/annotations/thumos14/<Class>_{train,val,test}.txt``. Returns the JSON's contents.
    """
    root = Path(root)
    plans = plan_videos(config)
    for plan in tqdm(plans, desc="synth videos", unit="video", disable=quiet):
        rng = np.random.default_rng([config.seed, SPLITS.index(plan.split), _index(plan), 1])
        write_video(root / "videos" / f"{plan.name}.mp4", render(plan, config, rng), config)
    gt = ground_truth(plans, config)
    write_ground_truth(root / "annotations.json", gt)
    short = {plan.name: plan.split for plan in plans}
    write_ground_truth(root / "annotations" / "thumos14", _with_subsets(gt, short))
    for split in SPLITS:
        names = [plan.name for plan in plans if plan.split == split]
        write_ground_truth(root / "annotations" / f"{split}.csv", _only(gt, names))
    return gt


def render(plan: VideoPlan, config: SynthConfig, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The video's (H, W, 3) uint8 RGB frames, one at a time."""
    width, height = config.width, config.height
    poses = actor_poses(plan, config, rng)
    colour = _saturated_colour(rng)
    background = _background(rng, width, height)
    noise = rng.normal(0.0, NOISE_SIGMA, (NOISE_BANK, height, width, 1)).astype(np.float32)
    blob_start = rng.uniform(0, 1, (NUM_BLOBS, 2)) * (width, height)
    speed = rng.uniform(*BLOB_SPEED_RANGE_PX_S, NUM_BLOBS) / config.fps
    heading = rng.uniform(0, 2 * math.pi, NUM_BLOBS)
    blob_velocity = np.stack([speed * np.cos(heading), speed * np.sin(heading)], axis=1)
    blob_radius = rng.uniform(0.06, 0.12, NUM_BLOBS) * height
    blob_grey = rng.uniform(40, 220, NUM_BLOBS)
    period_s = rng.uniform(*LIGHTING_PERIOD_RANGE_S)
    phase = rng.uniform(0, 2 * math.pi)
    noise_order = rng.integers(0, NOISE_BANK, plan.num_frames)
    for frame in range(plan.num_frames):
        picture = background.copy()
        span = np.array([width, height]) + 2 * blob_radius[:, None]
        centres = (blob_start + frame * blob_velocity + blob_radius[:, None]) % span
        for (x, y), radius, grey in zip(
            centres - blob_radius[:, None], blob_radius, blob_grey, strict=True
        ):
            _paint(picture, _disc_mask(x, y, radius, width, height), grey)
        _paint(picture, _actor_mask(poses[frame], width, height), colour)
        gain = 1.0 + LIGHTING_AMPLITUDE * math.sin(
            2 * math.pi * frame / config.fps / period_s + phase
        )
        picture = picture * gain + noise[noise_order[frame]]
        yield np.clip(picture, 0, 255).astype(np.uint8)


def actor_poses(plan: VideoPlan, config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """(num_frames, 4) actor pose per frame: centre x, y (pixels), angle (radians, clockwise on
    screen) and scale. Between motions the actor holds its pose (plus jitter) and jumps once to
    where the next motion starts."""
    poses = np.empty((plan.num_frames, 4))
    current = _rest_pose(rng, config)
    cursor = 0
    for motion in sorted(plan.actions + plan.false_starts, key=lambda m: m.start_frame):
        start = _start_pose(rng, config, motion.label_index)
        jump = int(rng.integers(cursor, motion.start_frame + 1))
        poses[cursor:jump] = current
        poses[jump : motion.start_frame] = start
        length = motion.end_frame - motion.start_frame
        progress = np.linspace(0.0, 1.0, length)
        if motion.extent < 1:  # out to ``extent`` and back
            progress = motion.extent * (1 - np.abs(2 * progress - 1))
        poses[motion.start_frame : motion.end_frame] = _move(
            start, motion.label_index, progress, config
        )
        current = poses[motion.end_frame - 1]
        cursor = motion.end_frame
    poses[cursor:] = current
    jitter = rng.normal(0, 1, (plan.num_frames, 3)) * (
        JITTER * config.height,
        JITTER * config.height,
        JITTER_RAD,
    )
    poses[:, :3] += jitter
    return poses


def write_video(path: Path, frames: Iterator[np.ndarray], config: SynthConfig) -> None:
    """Encode RGB frames as H.264 MP4 at ``config.fps``, atomically, the same bytes on any
    machine (``encode.write_h264``'s ``reproducible``)."""
    odd = config.width % 2 or config.height % 2  # 4:2:0 needs even sizes
    write_h264(
        path,
        frames,
        fps=config.fps,
        size=(config.width, config.height),
        crf=X264_CRF,
        pix_fmt="yuv444p" if odd else "yuv420p",
        reproducible=True,
    )


def _plan_video(rng: np.random.Generator, name: str, split: str, config: SynthConfig) -> VideoPlan:
    low_s, high_s = config.duration_range_s
    num_frames = round(rng.uniform(low_s, high_s) * config.fps)
    min_gap = round(MIN_GAP_S * config.fps)
    budget = rng.uniform(*ACTION_FRACTION_RANGE) * num_frames
    log_low, log_high = (math.log(s) for s in config.instance_duration_range_s)
    lengths: list[int] = []
    while True:
        length = max(1, round(math.exp(rng.uniform(log_low, log_high)) * config.fps))
        fits = num_frames - sum(lengths) - length >= (len(lengths) + 2) * min_gap
        if not fits or (lengths and sum(lengths) + length > budget):
            break
        lengths.append(length)
    gaps = _split_gaps(rng, num_frames - sum(lengths), len(lengths) + 1, min_gap)
    # every class before any repeats, in random order, so small splits stay near balanced
    labels = rng.permutation(np.resize(rng.permutation(config.num_classes), len(lengths)))
    actions, false_starts = [], []
    cursor = 0
    for index, gap in enumerate(gaps):
        false_start = _false_start(rng, cursor, gap, config)
        if false_start is not None:
            false_starts.append(false_start)
        cursor += gap
        if index < len(lengths):
            actions.append(Motion(cursor, cursor + lengths[index], int(labels[index])))
            cursor += lengths[index]
    return VideoPlan(name, split, num_frames, tuple(actions), tuple(false_starts))


def _split_gaps(rng: np.random.Generator, total: int, count: int, minimum: int) -> list[int]:
    """``count`` gaps of at least ``minimum`` frames adding up to ``total``."""
    shares = rng.dirichlet(np.ones(count)) * (total - count * minimum)
    gaps = [minimum + int(share) for share in shares]
    gaps[-1] += total - sum(gaps)
    return gaps


def _false_start(
    rng: np.random.Generator, gap_start: int, gap: int, config: SynthConfig
) -> Motion | None:
    """Sometimes, a motion begun and undone in the middle of a long enough gap."""
    shortest_s, longest_s = FALSE_START_RANGE_S
    margin = round(MIN_GAP_S / 2 * config.fps)
    room_s = (gap - 2 * margin) / config.fps
    if room_s < shortest_s or rng.uniform() >= FALSE_START_PROBABILITY:
        return None
    length = round(rng.uniform(shortest_s, min(longest_s, room_s)) * config.fps)
    start = gap_start + margin + int(rng.integers(0, gap - 2 * margin - length + 1))
    return Motion(start, start + length, int(rng.integers(config.num_classes)), FALSE_START_EXTENT)


def _index(plan: VideoPlan) -> int:
    return int(plan.name.rsplit("_", 1)[1])


def _rest_pose(rng: np.random.Generator, config: SynthConfig) -> np.ndarray:
    return np.array(
        [
            rng.uniform(0.3, 0.7) * config.width,
            rng.uniform(0.35, 0.65) * config.height,
            rng.uniform(0, 2 * math.pi),
            rng.uniform(0.85, 1.15),
        ]
    )


def _start_pose(rng: np.random.Generator, config: SynthConfig, label_index: int) -> np.ndarray:
    """Where class ``label_index``'s motion starts: its fixed start along the moving axis."""
    pose = _rest_pose(rng, config)
    name = CLASS_NAMES[label_index]
    if name == "MoveRight":
        pose[0] = TRAVERSAL_X[0] * config.width
    elif name == "MoveLeft":
        pose[0] = TRAVERSAL_X[1] * config.width
    elif name == "MoveDown":
        pose[1] = TRAVERSAL_Y[0] * config.height
    elif name == "MoveUp":
        pose[1] = TRAVERSAL_Y[1] * config.height
    elif name == "Grow":
        pose[3] = SCALE_RANGE[0]
    elif name == "Shrink":
        pose[3] = SCALE_RANGE[1]
    return pose


def _move(
    start: np.ndarray, label_index: int, progress: np.ndarray, config: SynthConfig
) -> np.ndarray:
    """Poses along class ``label_index``'s motion from ``start``; ``progress`` runs 0..1."""
    poses = np.repeat(start[None], len(progress), axis=0)
    name = CLASS_NAMES[label_index]
    sweep_x = (TRAVERSAL_X[1] - TRAVERSAL_X[0]) * config.width
    sweep_y = (TRAVERSAL_Y[1] - TRAVERSAL_Y[0]) * config.height
    change = {
        "RotateClockwise": (2, 2 * math.pi),
        "RotateAnticlockwise": (2, -2 * math.pi),
        "MoveRight": (0, sweep_x),
        "MoveLeft": (0, -sweep_x),
        "MoveDown": (1, sweep_y),
        "MoveUp": (1, -sweep_y),
        "Grow": (3, SCALE_RANGE[1] - SCALE_RANGE[0]),
        "Shrink": (3, SCALE_RANGE[0] - SCALE_RANGE[1]),
    }
    column, total = change[name]
    poses[:, column] += total * progress
    return poses


def _saturated_colour(rng: np.random.Generator) -> np.ndarray:
    """A vivid colour: one channel high, one low, one anywhere (nothing else in the scene is)."""
    channels = rng.permutation(3)
    colour = np.empty(3)
    colour[channels] = [rng.uniform(200, 240), rng.uniform(20, 60), rng.uniform(20, 240)]
    return colour.astype(np.float32)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth, low-saturation texture with a few static grey rectangles (clutter)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    grey = np.full((height, width), 110.0, np.float32)
    for _ in range(3):
        frequency = rng.uniform(0.01, 0.05, 2)
        grey += rng.uniform(8, 20) * np.sin(
            2 * math.pi * (frequency[0] * x + frequency[1] * y) + rng.uniform(0, 2 * math.pi)
        )
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width - 10)), int(rng.integers(0, height - 10))
        grey[y0 : y0 + int(rng.integers(6, 30)), x0 : x0 + int(rng.integers(6, 30))] = rng.uniform(
            50, 200
        )
    tint = rng.uniform(-8, 8, 3).astype(np.float32)
    return grey[..., None] + tint


def _paint(picture: np.ndarray, mask: tuple[tuple[slice, slice], np.ndarray] | None, value) -> None:
    if mask is None:
        return
    box, inside = mask
    picture[box][inside] = value


def _box(x: float, y: float, reach: float, width: int, height: int):
    """The pixel box within ``reach`` of (x, y), clipped to the frame, and its coordinates."""
    x0, x1 = max(0, int(x - reach)), min(width, int(x + reach) + 2)
    y0, y1 = max(0, int(y - reach)), min(height, int(y + reach) + 2)
    if x0 >= x1 or y0 >= y1:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), xs - x, ys - y


def _disc_mask(x: float, y: float, radius: float, width: int, height: int):
    found = _box(x, y, radius, width, height)
    if found is None:
        return None
    box, dx, dy = found
    return box, dx * dx + dy * dy <= radius * radius


def _actor_mask(pose: np.ndarray, width: int, height: int):
    """The bar-with-a-disc actor at ``pose`` (x, y, angle, scale); the disc marks its front."""
    x, y, angle, scale = pose
    half_length = BAR_LENGTH / 2 * height * scale
    thickness = BAR_HALF_THICKNESS * height * scale
    radius = DISC_RADIUS * height * scale
    found = _box(x, y, half_length + radius, width, height)
    if found is None:
        return None
    box, dx, dy = found
    along = dx * math.cos(angle) + dy * math.sin(angle)
    across = -dx * math.sin(angle) + dy * math.cos(angle)
    bar = (np.abs(along) <= half_length) & (np.abs(across) <= thickness)
    disc = (along - half_length) ** 2 + across**2 <= radius * radius
    return box, bar | disc


def _with_subsets(gt: GroundTruth, subsets: dict[str, str]) -> GroundTruth:
    return GroundTruth(gt.classes, gt.instances, gt.ambiguous, gt.videos, gt.durations_s, subsets)


def _only(gt: GroundTruth, videos: list[str]) -> GroundTruth:
    keep = set(videos)
    return GroundTruth(
        gt.classes,
        tuple(i for i in gt.instances if i.video in keep),
        (),
        tuple(videos),
        {v: gt.durations_s[v] for v in videos},
        {v: gt.subsets[v] for v in videos},
    )
