"""``scnn features``: videos to C3D feature files for feature-based detectors."""

from __future__ import annotations

import argparse
from pathlib import Path

from scnn.cli.common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    add_device_option,
    add_precision_option,
    network_device,
    note_bundled_model,
    positive_int,
    print_failures,
    torchrun_world,
)
from scnn.features import (
    ALL_FEATURE_LAYERS,
    DEFAULT_LAYER,
    DTYPES,
    NETWORKS,
    RES3D_DEFAULT_LAYER,
    SNIPPET_FRAMES,
    STRIDE_FRAMES,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scnn features`` and its arguments."""
    parser = subparsers.add_parser(
        "features",
        help="extract C3D features of videos for ActionFormer, TriDet, OpenTAD (docs/features.md)",
        description="Decode each video once at the model's frame rate and write OUT_DIR/"
        "<video>.npy, one row per snippet of --snippet frames every --stride frames (T = "
        "floor((N - snippet) / stride) + 1 rows for N frames), the activations of --layer; "
        "and OUT_DIR/features.json with the sampling and each video's rows. A video that "
        "fails is reported and the others go on; a re-run skips the videos done with the same "
        "settings; under torchrun the videos are split over the processes by duration.",
    )
    parser.add_argument("videos", type=Path, nargs="+", help="video files or folders of them")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="OUT_DIR")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model directory from `scnn train` or `scnn import-caffe` (default: the bundled "
        "synthetic-data model)",
    )
    source.add_argument(
        "--init-from",
        type=Path,
        default=None,
        metavar="WEIGHTS",
        help="the Sports-1M C3D instead: the PyTorch port's state dict (c3d.pickle) or the "
        "C3D-v1.0 Caffe model; 25 fps, 171x128 BGR frames minus the C3D mean, centre crop 112",
    )
    parser.add_argument(
        "--mean",
        type=Path,
        default=None,
        metavar="MEAN.binaryproto",
        help="with --init-from: C3D's per-pixel mean file (sport1m_train16_128_mean.binaryproto) "
        "subtracted instead of the per-channel mean (default: the per-channel mean)",
    )
    parser.add_argument(
        "--network",
        choices=NETWORKS,
        default=None,
        help="which network of the model directory (default localization)",
    )
    parser.add_argument(
        "--layer",
        choices=ALL_FEATURE_LAYERS,
        default=None,
        help="the activations written, after their ReLU; fc8: the logits. C3D has conv5b, "
        "pool5, fc6, fc7, fc8; Res3D-18 res3b, res4b, res5b, pool5, fc8 (default "
        f"{DEFAULT_LAYER} of C3D, {RES3D_DEFAULT_LAYER} of Res3D-18)",
    )
    parser.add_argument(
        "--snippet",
        type=int,
        default=SNIPPET_FRAMES,
        metavar="FRAMES",
        help=f"frames one feature covers, sampled to the network's clip (default {SNIPPET_FRAMES})",
    )
    parser.add_argument(
        "--stride",
        type=int,
        default=STRIDE_FRAMES,
        metavar="FRAMES",
        help=f"frames between consecutive features' starts (default {STRIDE_FRAMES})",
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default="float32", help="of the rows written (default float32)"
    )
    add_precision_option(parser)
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="clips per network call (default: as `scnn detect`: 256 on a GPU, at most 16 on "
        "a CPU)",
    )
    add_device_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Extract the features of every video, then say where they are."""
    from scnn import distributed, feature_runs, features
    from scnn.errors import ScnnError
    from scnn.video import find_videos

    if args.init_from is not None and args.network is not None:
        raise ScnnError("--network picks a network of a model directory, not of --init-from")
    if args.mean is not None and args.init_from is None:
        raise ScnnError("--mean goes with --init-from; a model directory has its own mean")
    videos = find_videos(args.videos)
    world = torchrun_world()
    if args.init_from is not None:
        source = features.sports1m_source(args.init_from, args.mean)
    else:
        if args.model is None:
            note_bundled_model()
        source = features.model_source(args.model, args.network or "localization")
    config = features.FeatureConfig(
        layer=args.layer or features.default_layer(source.network),
        snippet_frames=args.snippet,
        stride_frames=args.stride,
        dtype=args.dtype,
        precision=args.precision,
        batch_size=args.batch_size,
    )
    extractor = features.Extractor(source, config, network_device(args.device, world))
    result = feature_runs.extract_files(
        extractor,
        videos,
        args.out,
        world=world or distributed.SINGLE,
        quiet=args.quiet,
        on_failures=print_failures,
    )
    if result is None:  # under torchrun, rank 0 reports
        return EXIT_OK
    index = args.out / feature_runs.FEATURES_JSON
    print(f"features of {len(result.videos)} video(s) -> {args.out} ({index.name})")
    return EXIT_SOME_FAILED if result.failures else EXIT_OK
