"""C3D features of a whole video for the feature-based detectors (ActionFormer, TriDet,
OpenTAD): one row per snippet, the activations of one layer (docs/features.md).

A snippet is a window of the one-length grid ``snippet_frames`` long, every ``stride_frames``
frames at the model's frame rate, so extraction is detection's streaming pipeline with one
network: the same decoding (pipeline.video_chunks), clips (pipeline.chunk_windows), inference
copy, precision and batching. Rows go to the ``.npy`` file as they come (nothing per snippet
is kept: benchmarks/speed/speed_memory.py measures the memory); its header, which holds the row
count, is written last, and the file is renamed into place only when complete (scnn.fileio).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scnn.caffe import (
    CAFFE_OPTIONS,
    SPORTS1M_FC8,
    caffe_convention,
    is_caffe_model,
    load_caffe_weights,
    read_mean_cube,
)
from scnn.clips import InputConvention, batch_input_array, normalize_clips
from scnn.detect import BUNDLED_MODEL
from scnn.errors import ModelError, ScnnError, VideoError
from scnn.fileio import atomic_write
from scnn.model import (
    FEATURE_LAYERS,
    Network,
    feature_layers,
    load_sports1m_weights,
    network_for_weights,
)
from scnn.modelfile import MEAN_CUBE, MODEL_JSON, load_model
from scnn.pipeline import ClipQueue, chunk_windows, inference_network, video_chunks
from scnn.precision import exact_fp32
from scnn.res3d import RES3D_FEATURE_LAYERS, Res3D
from scnn.runtime import PRECISIONS, InferenceRuntime
from scnn.video import FPS
from scnn.windows import WindowConfig

SNIPPET_FRAMES = 16  # frames one feature covers by default: C3D's clip
STRIDE_FRAMES = 8  # frames between the starts of consecutive features by default
DEFAULT_LAYER = "fc6"  # C3D's classic video feature (Tran et al. 2015)
RES3D_DEFAULT_LAYER = "pool5"  # Res3D-18's last layer before its output (Tran et al. 2017)
# Every layer some network offers (model.feature_layers says which a network has).
ALL_FEATURE_LAYERS = tuple(dict.fromkeys(FEATURE_LAYERS + RES3D_FEATURE_LAYERS))
NETWORKS = ("localization", "proposal")  # the networks of a model directory
DTYPES = ("float32", "float16")  # of the rows written
SPORTS1M_CLASSES = 487  # fc8 of the Sports-1M C3D
NPY_HEADER_BYTES = 128  # the .npy preamble and header, padded: room for any (rows, dim) shape
_NPY_MAGIC = b"\x93NUMPY\x01\x00"  # the .npy format, version 1.0


@dataclass(frozen=True, eq=False)
class FeatureSource:
    """The network whose activations are the features, and how its input is made."""

    network: Network  # on the CPU, eval mode
    convention: InputConvention
    fps: float  # frames per second the video is decoded at
    name: str  # the model, as features.json names it
    network_name: str  # localization, proposal, or sports1m
    mean_file: str = ""  # the file of the convention's mean cube, as features.json names it


def model_source(path: str | Path | None, network: str = "localization") -> FeatureSource:
    """One network of a model directory (the bundled model when ``path`` is None)."""
    if network not in NETWORKS:
        raise ScnnError(f"network '{network}' is not one of {', '.join(NETWORKS)}")
    model_dir = BUNDLED_MODEL if path is None else Path(path)
    model = load_model(model_dir)
    return FeatureSource(
        network=getattr(model, network),
        convention=model.convention,
        fps=model.fps,
        name="bundled" if path is None else str(path),
        network_name=network,
        mean_file="" if model.convention.mean_cube is None else str(model_dir / MEAN_CUBE),
    )


def sports1m_source(path: str | Path, mean: str | Path | None = None) -> FeatureSource:
    """The Sports-1M C3D of a weight file: the PyTorch port's state dict, or the C3D-v1.0 Caffe
    model; decoded at 25 fps, with the input those weights were trained on
    (caffe.caffe_convention), minus the per-pixel cube of the mean file ``mean``
    (sport1m_train16_128_mean.binaryproto) when given."""
    path = Path(path)
    if (path / MODEL_JSON).is_file():
        raise ModelError("a model directory: pass it with --model, not as weights", path)
    try:
        convention = caffe_convention(None if mean is None else read_mean_cube(mean))
    except ValueError as exc:
        raise ModelError(str(exc), mean) from exc
    network = network_for_weights(SPORTS1M_CLASSES, CAFFE_OPTIONS, convention)
    if is_caffe_model(path):
        load_caffe_weights(network, path, fc8_layer=SPORTS1M_FC8)
    else:
        load_sports1m_weights(network, path, fc8=True)
    return FeatureSource(
        network.eval(),
        convention,
        FPS,
        str(path),
        "sports1m",
        mean_file="" if mean is None else str(mean),
    )


@dataclass(frozen=True)
class SnippetGrid(WindowConfig):
    """The snippets as a one-length window grid (windows.window_grid): starts 1, 1 + stride,
    … while the snippet ends inside the video, so T = ⌊(N − snippet) / stride⌋ + 1 rows for
    N frames. The stride is any whole number of frames, not a fraction of the length."""

    stride: int = STRIDE_FRAMES

    def __post_init__(self) -> None:
        if min(self.lengths_frames) < 1 or self.stride < 1:
            raise ScnnError(
                f"snippet {self.lengths_frames[0]} and stride {self.stride} frames: both must "
                "be at least 1"
            )

    def stride_frames(self, length_frames: int) -> int:
        return self.stride


@dataclass(frozen=True)
class FeatureConfig:
    """What is extracted and how fast; ``None`` picks by device (as detection does)."""

    layer: str = DEFAULT_LAYER
    snippet_frames: int = SNIPPET_FRAMES
    stride_frames: int = STRIDE_FRAMES
    dtype: str = "float32"
    precision: str = "auto"  # PRECISIONS: bf16 where the hardware computes in it
    batch_size: int | None = None
    decode_processes: int | None = None

    def __post_init__(self) -> None:
        for value, name, choices in (
            (self.layer, "layer", ALL_FEATURE_LAYERS),
            (self.dtype, "dtype", DTYPES),
            (self.precision, "precision", PRECISIONS),
        ):
            if value not in choices:
                raise ScnnError(f"{name} '{value}' is not one of {', '.join(choices)}")
        SnippetGrid((self.snippet_frames,), stride=self.stride_frames)  # checks both


def default_layer(network: Network) -> str:
    """The layer extracted unless one is asked for: C3D's fc6, Res3D-18's pool5."""
    return RES3D_DEFAULT_LAYER if isinstance(network, Res3D) else DEFAULT_LAYER


@dataclass(frozen=True)
class VideoFeatures:
    """What was written for one video."""

    rows: int  # T, one per snippet
    dim: int  # D, the layer's size
    frames: int  # N, decoded at the source's fps
    duration_s: float  # N / fps


class Extractor:
    """A feature source and settings, ready to run: ``Extractor(source, config)(video, out)``."""

    def __init__(
        self, source: FeatureSource, config: FeatureConfig, device: str | torch.device = "cpu"
    ):
        self.source = source
        self.config = config
        if config.layer not in feature_layers(source.network):
            raise ScnnError(
                f"layer '{config.layer}' is not one of "
                f"{', '.join(feature_layers(source.network))}, the layers of {source.name}"
            )
        self.runtime = InferenceRuntime.choose(
            source.network, device, config.precision, config.batch_size, config.decode_processes
        )
        self.network = inference_network(source.network, self.runtime.device, self.runtime.bf16)
        self.grid = SnippetGrid((config.snippet_frames,), stride=config.stride_frames)
        self.convention = source.convention.to(self.runtime.device)

    def __call__(
        self, video: str | Path, out: str | Path, progress: Callable[[int], None] | None = None
    ) -> VideoFeatures:
        """Write ``video``'s features to the ``.npy`` file ``out`` (complete or not at all);
        ``progress`` is called with each chunk's new frames. A video shorter than one snippet
        is a VideoError."""
        chunks = video_chunks(
            video,
            self.source.fps,
            self.convention,
            self.runtime.device,
            self.runtime.decode_processes,
        )
        queue, rows, dim, frames = ClipQueue(self.runtime.batch_size), 0, 0, 0
        kept = self._kept_input()
        with atomic_write(out, "wb") as file, torch.inference_mode():
            file.write(bytes(NPY_HEADER_BYTES))  # replaced by the header once rows is known
            for step in chunk_windows(chunks, self.grid, self.convention, self.runtime.device):
                step.queue_clips(queue, step.windows.start_frame)
                for batch in self._batches(queue, kept, final=False):
                    rows, dim = rows + len(batch), batch.shape[1]
                    file.write(batch.tobytes())
                frames = step.frames_seen
                if progress is not None and step.new_frames:
                    progress(step.new_frames)
            for batch in self._batches(queue, kept, final=True):
                rows, dim = rows + len(batch), batch.shape[1]
                file.write(batch.tobytes())
            if rows == 0:
                raise VideoError(
                    f"{frames} frames at {self.source.fps:g} fps: shorter than one snippet "
                    f"({self.config.snippet_frames} frames)",
                    video,
                )
            file.seek(0)
            file.write(npy_header((rows, dim), np.dtype(self.config.dtype)))
        return VideoFeatures(rows, dim, frames, frames / self.source.fps)

    def _kept_input(self) -> torch.Tensor | None:
        """On a CPU, the array each batch of a video is normalised into (batch_input_array)."""
        if self.runtime.device.type != "cpu":
            return None
        return batch_input_array(self.runtime.batch_size, self.convention, self.runtime.dtype)

    def _batches(
        self, queue: ClipQueue, kept: torch.Tensor | None, final: bool
    ) -> Iterator[np.ndarray]:
        """The rows of each full batch waiting (and, when ``final``, of the rest), in order,
        normalised into ``kept`` when given."""
        size, dtype = self.runtime.batch_size, self.runtime.dtype
        while len(queue) >= size or (final and len(queue)):
            clips, _ = queue.pop(size)
            clips = normalize_clips(clips, self.convention, dtype, out=kept)
            with exact_fp32(self.runtime.device, dtype):
                activations = self.network.activations(clips, self.config.layer)
            yield activations.float().cpu().numpy().astype(self.config.dtype, copy=False)


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The ``.npy`` (version 1.0) preamble and header of a C-order array, padded with spaces
    to NPY_HEADER_BYTES, so it can be written over the placeholder once the shape is known."""
    descr = np.lib.format.dtype_to_descr(dtype)
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    size = NPY_HEADER_BYTES - len(_NPY_MAGIC) - 2
    return _NPY_MAGIC + struct.pack("<H", size) + text.ljust(size - 1).encode("latin1") + b"\n"
