"""``scnn detect``: videos to detections (one process, or shared out under torchrun)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from scnn.cli.common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    add_device_option,
    add_precision_option,
    add_report_option,
    add_vote_option,
    count,
    finite,
    fraction,
    network_device,
    note_bundled_model,
    positive_int,
    print_failures,
    torchrun_world,
)
from scnn.errors import ScnnError

if TYPE_CHECKING:
    import torch

    from scnn.detect import Detector

# Options a live run refuses: files written once the whole video is known (the library
# refuses --top-k, a whole video's ranking, and --vote-iou, which moves boundaries after it).
LIVE_UNSUPPORTED = {"--save-windows": "save_windows", "--report": "report"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scnn detect`` and its arguments."""
    parser = subparsers.add_parser(
        "detect",
        help="find and label actions in videos (the whole S-CNN prediction pipeline)",
        description="Decode each video once at 25 fps, score every window of the multi-scale "
        "grid with the proposal network, the survivors with the localization network, then "
        "weight by the window-length prior and run per-class NMS (method.md section 4). "
        "A video that fails is reported and the others go on. Under torchrun the videos are "
        "split over the processes by duration, each finished video is recorded in OUT.parts/ "
        "(a re-run skips those) and rank 0 merges them into OUT. With --live, one source (a file, "
        "a named pipe or device, - for standard input, or a URL FFmpeg opens) is read as a "
        "stream and each detection is printed as a JSON line the moment it is final "
        "(docs/live.md).",
    )
    parser.add_argument(
        "videos",
        nargs="+",
        help="video files or folders of them; with --live one source: a file, a pipe, - "
        "(standard input) or a URL (http://, rtsp://, udp://...)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="print each detection as a JSON line (video, start, end, label, score) as soon as "
        "it is final, to OUT (default -: standard output, which then carries only those lines)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model directory from `scnn train` (default: the bundled synthetic-data model)",
    )
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        help="output by extension (required without --live): .json (ActivityNet), .csv, .txt "
        "(THUMOS14), .vtt or .srt (subtitles: one file per video; with several videos, OUT's "
        "folder gets <video>.vtt); with --live a .jsonl file or - (standard output)",
    )
    parser.add_argument(
        "--save-windows",
        type=Path,
        default=None,
        metavar="CSV",
        help="also write the scored proposal survivors (the windows CSV `scnn postprocess` reads)",
    )
    add_report_option(parser)
    parser.add_argument(
        "--proposal-threshold",
        type=fraction,
        default=None,
        help="P(action) a window needs to reach the localization network; 0: every window, "
        "without running the proposal network (default: the model's: 0.7 for the faithful "
        "config, 0 for the bundled model)",
    )
    parser.add_argument(
        "--nms",
        type=fraction,
        default=None,
        help="NMS IoU threshold, suppress IoU > this (default: the model's, 0.4)",
    )
    parser.add_argument(
        "--prior",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="weight scores by the window-length prior (default: the model's; on for the "
        "faithful config, off for the synthetic CPU model)",
    )
    parser.add_argument("--min-score", type=finite, default=None, help="drop scores below (off)")
    parser.add_argument(
        "--top-k", type=positive_int, default=None, help="keep the best K per video (off)"
    )
    add_vote_option(
        parser, "the model's: 0.4 for the bundled model, off for models of the faithful config"
    )
    parser.add_argument(
        "--boundary-clips",
        type=count,
        default=None,
        metavar="ROUNDS",
        help="rounds of the model's boundary-clip network, which moves each detection's start "
        "and end from a clip centred on each, reading the video a second time (with --live, "
        "once a detection is final); 0: off (default: the model's rounds, when it has the "
        "network)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="clips per network call (default: 256 on a GPU; on a CPU as many as keep "
        "conv1's output under 32 MiB, at most 16)",
    )
    add_precision_option(parser)
    parser.add_argument(
        "--compile",
        default="",
        metavar="MODE",
        help="torch.compile the networks in this mode (e.g. default, max-autotune); off by "
        "default: compiling takes minutes and pays off on long videos on a GPU",
    )
    parser.add_argument(
        "--decode-processes",
        type=positive_int,
        default=None,
        help="processes that decode a long video by time segments (default: 1 on a CPU; on "
        "a GPU one per 2 cores, at most 8)",
    )
    parser.add_argument(
        "--lanes",
        type=count,
        default=0,
        help="on a CPU, threads that each decode and score a time segment of a long video (at "
        "least 60 s each), sharing the torch threads; default: one per torch thread, at most 8; "
        "1: none",
    )
    add_device_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Detect (and, with --report, write the HTML report of what was found)."""
    from scnn import formats
    from scnn.batch import detect_videos, write_results
    from scnn.sharded import detect_sharded
    from scnn.video import find_videos

    if args.live:
        return run_live(args)
    if args.out is None:
        raise ScnnError("-o/--out is required (only --live writes to standard output)")
    formats.get_writer(args.out)  # an unknown format fails before any decoding
    videos = find_videos(args.videos)  # so do missing inputs and empty folders
    world = torchrun_world()
    detector = load_detector(args, network_device(args.device, world))
    if world is None:
        keep_windows = args.save_windows is not None
        result = detect_videos(detector, videos, quiet=args.quiet, keep_windows=keep_windows)
        print_failures(result.failures)  # told before writing: also when every video failed
        write_results(result, args.out, detector.classes, args.save_windows)
    else:
        quiet = args.quiet or not world.is_main
        result = detect_sharded(
            detector, videos, args.out, world=world, windows_csv=args.save_windows, quiet=quiet
        )
        if result is None:  # rank 0 reports the merged result
            return EXIT_OK
        print_failures(result.failures)
    found = sum(len(d) for d in result.detections.values())
    print(f"{found} detections in {len(result.detections)} video(s) -> {args.out}")
    if args.report is not None:
        from scnn.html_report import write_html_report

        played = {p.stem: p for p in videos if p.stem in result.detections}
        index = write_html_report(
            args.report, result.all_detections(), videos=played, classes=detector.classes
        )
        print(f"HTML report: {index}")
    return EXIT_SOME_FAILED if result.failures else EXIT_OK


def load_detector(args: argparse.Namespace, device: torch.device) -> Detector:
    """The model and the prediction settings given on the command line."""
    from scnn.detect import Detector

    if args.model is None:
        note_bundled_model()
    return Detector.load(
        args.model,
        device=device,
        proposal_threshold=args.proposal_threshold,
        nms_threshold=args.nms,
        use_prior=args.prior,
        min_score=args.min_score,
        top_k=args.top_k,
        vote_iou=args.vote_iou,
        boundary_clip_rounds=args.boundary_clips,
        batch_size=args.batch_size,
        decode_processes=args.decode_processes,
        lanes=args.lanes,
        precision=args.precision,
        compile=args.compile,
    )


def run_live(args: argparse.Namespace) -> int:
    """``--live``: one source, detection lines as they become final, the summary on stderr."""
    from scnn.live import STDOUT, write_live

    if len(args.videos) != 1:
        raise ScnnError(f"--live reads one source, not {len(args.videos)}")
    unsupported = [flag for flag, value in LIVE_UNSUPPORTED.items() if getattr(args, value)]
    if unsupported or torchrun_world() is not None:
        what = ", ".join(unsupported) or "torchrun"
        raise ScnnError(f"--live cannot be combined with {what}")
    out = args.out or STDOUT
    source = args.videos[0]
    detector = load_detector(args, network_device(args.device, None))
    found = write_live(detector, source, out, quiet=args.quiet)
    print(f"{found} detections in {source} -> {out}", file=sys.stderr)
    return EXIT_OK
