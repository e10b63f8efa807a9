"""The ``scnn`` command. Thin: each subcommand parses, validates and calls one library function.

Exit codes: 0 success; 1 an input or processing error (one line on stderr naming the file);
2 a bad command line; 3 a batch finished but some items failed (listed at the end);
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from scnn.bundled_data import resolve_class_table, resolve_ground_truth
from scnn.detect import PRECISIONS
from scnn.errors import ScnnError
from scnn.evaluate import PROTOCOLS
from scnn.stages import STAGES

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SOME_FAILED = 3
EXIT_INTERRUPTED = 130


def _set_threads(threads: int | None) -> None:
    """Fix torch's intra-op thread count: oversubscribing a 2-core machine costs 10x. Under
    torchrun the processes of one machine share its cores (2 cores, 2 processes: 1 each)."""
    import torch

    from scnn.distributed import threads_per_process, world_from_env

    world = world_from_env()
    if not threads and world is not None:
        threads = threads_per_process(world)
    if threads:
        torch.set_num_threads(threads)


def _torchrun_world():
    """This process's place when started by torchrun (None otherwise); only rank 0 logs."""
    from scnn.distributed import world_from_env

    world = world_from_env()
    if world is not None and not world.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    return world


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train the proposal, classification and localization networks",
        description="Train S-CNN's three networks (proposal, classification, then localization "
        "from classification) and write OUT/model, the directory `scnn detect` uses. Settings "
        "come from a TOML config; the flags below override it; the resolved config is saved "
        "as OUT/config.json.",
    )
    parser.add_argument(
        "dataset",
        type=Path,
        nargs="?",
        help="folder with annotations.json and videos/ (as `scnn synth` writes it)",
    )
    parser.add_argument(
        "--annotations",
        type=resolve_ground_truth,
        help="ground truth: ActivityNet JSON, THUMOS14 folder or CSV, or thumos14-val (the "
        "bundled THUMOS14 validation set) (default: DATASET/annotations.json)",
    )
    parser.add_argument(
        "--videos", type=Path, help="folder of <video>.<ext> files (default: DATASET/videos)"
    )
    parser.add_argument(
        "--val-annotations",
        type=resolve_ground_truth,
        help="ground truth holding the validation subset, or thumos14-val (bundled) "
        "(default: the --annotations file)",
    )
    parser.add_argument(
        "--trimmed",
        type=Path,
        help="trimmed clips as FOLDER/<class>/<clip>.<ext>, each one positive sample",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--config",
        default="synthetic_cpu",
        help="TOML file, or a ready config: synthetic_cpu (default, small CPU model), "
        "thumos14 (the authors' setup)",
    )
    parser.add_argument(
        "--stage",
        choices=("all", *(stage.name for stage in STAGES)),
        default="all",
        help="stage(s) to train (default: all)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip finished stages and continue the others from their last checkpoint",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="decoded-frame cache (default: OUT/frame_cache; 98.5 MB per video-minute at 171x128)",
    )
    parser.add_argument("--steps", type=int, help="optimiser steps per stage")
    parser.add_argument("--batch-size", type=int, help="clips per step")
    parser.add_argument("--lr", type=float, help="base learning rate")
    parser.add_argument("--workers", type=int, help="DataLoader worker processes (0: none)")
    parser.add_argument("--device", help="auto (default: CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--seed", type=int, help="seed of weights, sample order and crops")
    parser.add_argument(
        "--init-from",
        help="pre-trained weights for the proposal and classification stages: the Sports-1M "
        "C3D .caffemodel, its PyTorch port (a torch.save-d state dict, e.g. c3d.pickle), or an "
        "scnn model directory",
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="deterministic kernels, so --resume reaches the same weights as one run",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key with a TOML value, e.g. --set clip.crop_size=64",
    )
    parser.set_defaults(run=_run_train)


def _config_overrides(args: argparse.Namespace) -> dict[str, object]:
    import tomllib

    overrides: dict[str, object] = {}
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep:
            raise ScnnError(f"--set {item}: expected KEY=VALUE")
        try:
            overrides[key.strip()] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            overrides[key.strip()] = text  # a bare word is a string
    for flag in (
        "steps",
        "batch_size",
        "lr",
        "workers",
        "device",
        "seed",
        "init_from",
        "deterministic",
    ):
        if getattr(args, flag) is not None:
            overrides[flag] = getattr(args, flag)
    return overrides


def _run_train(args: argparse.Namespace) -> int:
    import torch

    from scnn import train
    from scnn.config import load_config

    if args.dataset is None and (args.annotations is None or args.videos is None):
        raise ScnnError("give a DATASET folder, or both --annotations and --videos")
    config = load_config(args.config, _config_overrides(args))
    if config.deterministic:  # cuBLAS needs a fixed workspace to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(config.deterministic)
    torch.backends.cudnn.benchmark = not config.deterministic
    world = _torchrun_world() or train.SINGLE
    model_dir = train.run(
        config,
        args.annotations or args.dataset / "annotations.json",
        args.videos or args.dataset / "videos",
        args.out,
        stage=args.stage,
        val_annotations=args.val_annotations,
        trimmed_dir=args.trimmed,
        cache_dir=args.cache_dir,
        resume=args.resume,
        progress=not args.quiet,
        world=world,
    )
    if model_dir is not None and world.is_main:
        print(f"model directory: {model_dir}")
    return EXIT_OK


def _add_detect(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="find and label actions in videos (the whole S-CNN prediction pipeline)",
        description="Decode each video once at 25 fps, score every window of the multi-scale "
        "grid with the proposal network, the survivors with the localization network, then "
        "weight by the window-length prior and run per-class NMS (method.md section 4). "
        "A video that fails is reported and the others go on. Under torchrun the videos are "
        "split over the processes by duration, each finished video is recorded in OUT.parts/ "
        "(a re-run skips those) and rank 0 merges them into OUT.",
    )
    parser.add_argument("videos", type=Path, nargs="+", help="video files or folders of them")
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
        required=True,
        help="output by extension: .json (ActivityNet), .csv, .txt (THUMOS14), .vtt or .srt "
        "(subtitles: one file per video; with several videos, OUT's folder gets <video>.vtt)",
    )
    parser.add_argument(
        "--save-windows",
        type=Path,
        default=None,
        metavar="CSV",
        help="also write the scored proposal survivors (the windows CSV `scnn postprocess` reads)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write an HTML report folder (video pages with clickable timelines)",
    )
    parser.add_argument(
        "--proposal-threshold",
        type=float,
        default=None,
        help="P(action) a window needs to reach the localization network (default: the "
        "model's, 0.7)",
    )
    parser.add_argument(
        "--nms",
        type=float,
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
    parser.add_argument("--min-score", type=float, default=None, help="drop scores below (off)")
    parser.add_argument("--top-k", type=int, default=None, help="keep the best K per video (off)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="clips per network call (default: 256 on a GPU; on a CPU as many as keep "
        "conv1's output under 64 MB, at most 16)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="network precision (default auto: bf16 on CUDA and on CPUs with AVX512-BF16/AMX)",
    )
    parser.add_argument(
        "--compile",
        default="",
        metavar="MODE",
        help="torch.compile both networks in this mode (e.g. default, max-autotune); off by "
        "default: compiling takes minutes and pays off on long videos on a GPU",
    )
    parser.add_argument(
        "--decode-processes",
        type=int,
        default=None,
        help="processes that decode a long video by time segments (default: 1 on a CPU; on "
        "a GPU one per 2 cores, at most 8)",
    )
    parser.add_argument(
        "--lanes",
        type=int,
        default=0,
        help="on a CPU, threads that each decode and score a time segment of a long video (at "
        "least 60 s each), sharing the torch threads; default: one per torch thread, at most 8; "
        "1: none",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.set_defaults(run=_run_detect)


def _run_detect(args: argparse.Namespace) -> int:
    import torch

    from scnn import batch, detect, distributed, formats, sharded
    from scnn.video import find_videos

    formats.get_writer(args.out)  # an unknown format fails before any decoding
    videos = find_videos(args.videos)  # so do missing inputs and empty folders
    world = _torchrun_world()
    device = args.device
    torch.backends.cudnn.benchmark = True  # fixed clip shapes: let cuDNN pick its fastest kernels
    if world is not None:
        device = str(distributed.local_device(torch.device(device), world))
    detector = detect.Detector.load(
        args.model,
        device=device,
        proposal_threshold=args.proposal_threshold,
        nms_threshold=args.nms,
        use_prior=args.prior,
        min_score=args.min_score,
        top_k=args.top_k,
        batch_size=args.batch_size,
        decode_processes=args.decode_processes,
        lanes=args.lanes,
        precision=args.precision,
        compile=args.compile,
    )
    if world is None:
        result = batch.detect_videos(detector, videos, quiet=args.quiet)
        _print_failures(result.failures)
        batch.write_results(result, args.out, detector.classes, args.save_windows)
    else:  # torchrun: shared out by duration, resumable (OUT.parts/)
        quiet = args.quiet or not world.is_main
        merged = sharded.detect_sharded(
            detector, videos, args.out, world=world, windows_csv=args.save_windows, quiet=quiet
        )
        if merged is None:  # rank 0 reports the merged result
            return EXIT_OK
        result = merged
        _print_failures(result.failures)
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


def _print_failures(failures: dict[str, str]) -> None:
    for reason in failures.values():
        print(f"failed: {reason}", file=sys.stderr)


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="synthetic test videos -> detections -> mAP under all protocols -> timelines",
        description="Generate a few synthetic test videos (a seed the bundled model never saw), "
        "detect with the bundled model, evaluate under the thumos14, scnn and activitynet "
        "protocols and write a report folder. With --train, first generate the synthetic "
        "dataset and train the three networks from scratch (about 15 minutes on 2 cores).",
    )
    parser.add_argument(
        "-o", "--out", type=Path, default=Path("scnn-demo"), help="report folder (scnn-demo)"
    )
    parser.add_argument("--model", type=Path, default=None, help="model directory (bundled)")
    parser.add_argument("--videos", type=int, default=3, help="test videos to generate (3)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the test videos (2026)")
    parser.add_argument(
        "--train", action="store_true", help="train a model from scratch first (CPU default)"
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write an HTML report folder (video pages with clickable timelines)",
    )
    parser.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from scnn.demo import run_demo

    if args.train and args.model is not None:
        raise ScnnError("--train makes its own model; drop --model")
    result = run_demo(
        args.out,
        model=args.model,
        videos=args.videos,
        seed=args.seed,
        train=args.train,
        quiet=args.quiet,
    )
    print(result.summary())
    if args.report is not None:
        from scnn.html_report import report_from_files

        index = report_from_files(
            args.report,
            result.out / "detections.json",
            gt=result.out / "test_data" / "annotations.json",
            videos_dir=result.out / "test_data" / "videos",
        )
        print(f"HTML report: {index}")
    return EXIT_SOME_FAILED if result.failures else EXIT_OK


def _add_class_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--classes",
        type=resolve_class_table,
        default=None,
        help="class table: CSV with a header and a 'name' column, or thumos14 (the bundled "
        "THUMOS14 table: index,name,thumos14_id)",
    )
    parser.add_argument(
        "--class-ids",
        default="index",
        metavar="COLUMN",
        help="the class table's column the files' numeric class ids come from "
        "(default: index, the 1..K order; thumos14_id for official THUMOS14 submissions)",
    )


def _add_postprocess(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "postprocess",
        help="scored windows -> detections (window-length prior, per-class temporal NMS)",
        description="Turn a windows CSV (columns of scnn_c3d_test_windows.csv.gz, gzip or "
        "plain) into detections: drop background, weight scores by the window-length prior, "
        "greedy per-video per-class NMS, sort by score (method.md section 4).",
    )
    parser.add_argument("windows", type=Path, help="windows CSV (.csv or .csv.gz)")
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        required=True,
        help="output file: .txt (THUMOS14 submission), .json (ActivityNet) or .csv",
    )
    _add_class_options(parser)
    parser.add_argument(
        "--prior-from",
        type=resolve_ground_truth,
        default=None,
        metavar="GT",
        help="training annotations (THUMOS14 folder, .json or .csv, or thumos14-val: the "
        "bundled THUMOS14 validation set, the authors' source) for the window-length prior: a "
        "duration bin per window length in WINDOWS (the authors' bins for their 16..512 "
        "frames, else each length's duration) (default: no prior)",
    )
    parser.add_argument("--prior-subset", default=None, help="subset of --prior-from to use")
    parser.add_argument(
        "--nms",
        type=float,
        default=0.4,
        help="NMS IoU threshold: suppress IoU > this (default 0.4, the authors' demo; their "
        "THUMOS14 table uses evaluation IoU - 0.1)",
    )
    parser.add_argument("--top-k", type=int, default=None, help="keep the best K per video (off)")
    parser.add_argument(
        "--min-score", type=float, default=None, help="drop weighted scores below this (off)"
    )
    parser.set_defaults(run=_run_postprocess)


def _run_postprocess(args: argparse.Namespace) -> int:
    from scnn import formats, postprocess
    from scnn.formats import windows_csv

    prior_gt = None
    if args.prior_from is not None:
        prior_gt = formats.load_ground_truth(args.prior_from, args.prior_subset)
    if args.classes is not None:
        table = formats.read_class_table(args.classes, args.class_ids)
        classes = tuple(table[k] for k in sorted(table))
    elif prior_gt is not None:
        classes = prior_gt.classes
    else:
        raise ScnnError("give --classes or --prior-from: the windows' class ids need a list")
    windows = windows_csv.read_windows_csv(args.windows, classes)
    prior = None
    if prior_gt is not None:
        lengths = sorted(set(windows.window_frames.tolist()))
        prior = postprocess.window_length_prior(prior_gt.instances, classes, lengths)
    detections = postprocess.postprocess(
        windows, args.nms, prior, top_k=args.top_k, min_score=args.min_score
    )
    formats.write_detections(args.out, detections, classes)
    print(f"{len(detections)} detections from {len(windows)} windows -> {args.out}")
    return EXIT_OK


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="mAP of detections against ground truth under a named protocol",
        description="Per-class AP and mAP per IoU threshold. Protocols: thumos14 (the official "
        "THUMOS14 kit), scnn (the S-CNN authors' updated kit, the paper's numbers), "
        "activitynet (the ActivityNet detection evaluator, stable tie order).",
    )
    parser.add_argument(
        "--gt",
        type=resolve_ground_truth,
        required=True,
        help="ground truth: THUMOS14 annotation folder, ActivityNet .json or .csv, or "
        "thumos14-val (the bundled THUMOS14 validation set)",
    )
    parser.add_argument(
        "--pred", type=Path, required=True, help="detections: THUMOS14 .txt, .json or .csv"
    )
    parser.add_argument("--protocol", required=True, choices=tuple(PROTOCOLS))
    parser.add_argument(
        "--iou",
        type=float,
        nargs="+",
        default=None,
        metavar="T",
        help="IoU thresholds (default: 0.1 0.2 0.3 0.4 0.5 for thumos14/scnn, "
        "0.5:0.05:0.95 for activitynet)",
    )
    parser.add_argument(
        "--subset",
        default=None,
        help="ground-truth subset (THUMOS14 file suffix, ActivityNet 'subset'; default: all)",
    )
    _add_class_options(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--proposals",
        action="store_true",
        help="also report class-agnostic proposal recall and AR@AN (1, 5, 10, 50, 100 per video)",
    )
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    import json

    from scnn import fileio, formats
    from scnn.evaluate import evaluate, format_proposal_recall, format_result, proposal_recall

    gt = formats.load_ground_truth(args.gt, args.subset)
    table = None
    if args.classes is not None:
        table = formats.read_class_table(args.classes, args.class_ids)
    detections = formats.load_detections(args.pred, gt.classes, table)
    result = evaluate(gt, detections, args.protocol, args.iou)
    print(format_result(result))
    if args.proposals:
        print(format_proposal_recall(proposal_recall(gt, detections)))
    if args.json is not None:
        fileio.atomic_write_text(args.json, json.dumps(result.to_dict(), indent=1) + "\n")
    return EXIT_OK


def _add_diagnose(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diagnose",
        help="where detections go wrong: DETAD's error types, mAP gains, missed instances",
        description="Match detections as the activitynet protocol does at one tIoU and give "
        "each false positive one type (double_detection, wrong_label, localization, "
        "confusion, background), the mAP gained if each type were removed, missed instances "
        "by length and by instances per video, and the wrong labels' confusion matrix "
        "(DETAD, Alwassel et al., ECCV 2018). Writes OUT/diagnosis.json and pictures.",
    )
    parser.add_argument(
        "--gt",
        type=resolve_ground_truth,
        required=True,
        help="ground truth: THUMOS14 annotation folder, ActivityNet .json or .csv, or "
        "thumos14-val (the bundled THUMOS14 validation set)",
    )
    parser.add_argument(
        "--pred", type=Path, required=True, help="detections: THUMOS14 .txt, .json or .csv"
    )
    parser.add_argument(
        "--iou", type=float, default=0.5, help="tIoU of a true positive (default 0.5)"
    )
    parser.add_argument(
        "--subset",
        default=None,
        help="ground-truth subset (THUMOS14 file suffix, ActivityNet 'subset'; default: all)",
    )
    _add_class_options(parser)
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        required=True,
        help="folder for diagnosis.json, false_positives.png, false_negatives.png and "
        "wrong_labels.png",
    )
    parser.set_defaults(run=_run_diagnose)


def _run_diagnose(args: argparse.Namespace) -> int:
    from scnn import formats
    from scnn.diagnose import diagnose_files, format_diagnosis

    table = None
    if args.classes is not None:
        table = formats.read_class_table(args.classes, args.class_ids)
    diagnosis = diagnose_files(
        args.gt, args.pred, args.out, iou=args.iou, subset=args.subset, class_table=table
    )
    print(format_diagnosis(diagnosis))
    print(f"diagnosis: {args.out / 'diagnosis.json'}")
    return EXIT_OK


def _add_synth(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate the synthetic untrimmed-video dataset",
        description="Write OUT/videos/*.mp4 (H.264, 25 fps) and their ground truth "
        "(OUT/annotations.json, OUT/annotations/{train,val,test}.csv and THUMOS14 files in "
        "OUT/annotations/thumos14/). The same seed gives the same annotations.",
    )
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--num-classes", type=int, default=6, help="action classes, 1..8 (default: 6)"
    )
    parser.add_argument("--train", type=int, default=24, help="training videos (default: 24)")
    parser.add_argument("--val", type=int, default=6, help="validation videos (default: 6)")
    parser.add_argument("--test", type=int, default=8, help="test videos (default: 8)")
    parser.add_argument(
        "--duration-s",
        type=float,
        nargs=2,
        default=(60.0, 120.0),
        metavar=("MIN", "MAX"),
        help="video duration range in seconds (default: 60 120)",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(171, 128),
        metavar=("W", "H"),
        help="frame size in pixels (default: 171 128)",
    )
    parser.set_defaults(run=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from scnn import synth

    config = synth.SynthConfig(
        num_classes=args.num_classes,
        train_videos=args.train,
        val_videos=args.val,
        test_videos=args.test,
        duration_range_s=tuple(args.duration_s),
        width=args.size[0],
        height=args.size[1],
        seed=args.seed,
    )
    gt = synth.generate(args.out, config, quiet=args.quiet)
    print(f"{args.out}: {len(gt.videos)} videos, {len(gt.instances)} action instances")
    return EXIT_OK


def _add_report(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="an HTML report: video pages with clickable timelines, metrics, PR curves",
        description="Write a self-contained report folder (opens from file://, no network): "
        "index.html lists the videos and, with --gt, mAP per IoU threshold under the "
        "thumos14, scnn and activitynet protocols, per-class AP and a precision-recall "
        "picture; each video's page has a player, ground-truth and detection timelines per "
        "class (click to seek) and a score slider. Videos a browser cannot play are "
        "re-encoded to H.264 MP4 (25 fps, at most 360 pixels high, no audio).",
    )
    parser.add_argument("results", type=Path, help="detections: .json (ActivityNet), .csv, .txt")
    parser.add_argument(
        "--gt",
        type=resolve_ground_truth,
        default=None,
        help="ground truth (THUMOS14 folder, .json or .csv, or thumos14-val: the bundled "
        "THUMOS14 validation set): adds metrics and marks true and false positives",
    )
    parser.add_argument("--subset", default=None, help="ground-truth subset (default: all)")
    parser.add_argument(
        "--videos",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of <video>.<ext> files to play beside the timelines (default: none)",
    )
    parser.add_argument("-o", "--out", type=Path, required=True, help="report folder")
    parser.add_argument(
        "--iou",
        type=float,
        default=0.5,
        help="IoU at which detections count as true positives on the pages (default 0.5)",
    )
    _add_class_options(parser)
    parser.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from scnn import formats, html_report

    table = None
    if args.classes is not None:
        table = formats.read_class_table(args.classes, args.class_ids)
    index = html_report.report_from_files(
        args.out,
        args.results,
        gt=args.gt,
        subset=args.subset,
        videos_dir=args.videos,
        class_table=table,
        iou_threshold=args.iou,
    )
    print(f"HTML report: {index}")
    return EXIT_OK


def _add_import_caffe(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-caffe",
        help="turn the S-CNN authors' released Caffe models into a model directory",
        description="Read the authors' C3D-v1.0 proposal and localization .caffemodel files "
        "and their mean file, and write a model directory that scnn detect runs as Caffe did "
        "(BGR frames minus the per-pixel mean cube, centre crop 112, Caffe's pooling).",
    )
    parser.add_argument(
        "--proposal", type=Path, required=True, help="SCNN_uniform16_binary_iter_30000"
    )
    parser.add_argument(
        "--localization",
        type=Path,
        required=True,
        help="SCNN_uniform16_cls20_with_overlap_loss_iter_30000",
    )
    parser.add_argument(
        "--mean", type=Path, required=True, help="train01_16_128_171_mean.binaryproto"
    )
    parser.add_argument(
        "--classes",
        default="thumos14",
        help="class table whose 'index' 1..K is fc8's order (default: thumos14, bundled)",
    )
    parser.add_argument(
        "--prior-from",
        default="thumos14-val",
        metavar="GT",
        help="ground truth the window-length prior is computed from "
        "(default: thumos14-val, the bundled THUMOS14 val annotations, as the authors)",
    )
    parser.add_argument("-o", "--out", type=Path, required=True, help="model directory to write")
    parser.set_defaults(run=_run_import_caffe)


def _run_import_caffe(args: argparse.Namespace) -> int:
    from scnn.caffe import import_caffe

    import_caffe(
        args.proposal,
        args.localization,
        args.mean,
        args.out,
        classes=args.classes,
        prior_from=args.prior_from,
    )
    print(f"model directory: {args.out}")
    return EXIT_OK


# Each entry adds one subcommand's parser; the parser sets ``run`` to the function to call.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_synth,
    _add_train,
    _add_postprocess,
    _add_evaluate,
    _add_diagnose,
    _add_detect,
    _add_demo,
    _add_report,
    _add_import_caffe,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scnn",
        description="Segment-CNN temporal action localization: find and label actions in "
        "long, untrimmed videos.",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_subcommand in SUBCOMMANDS:
        add_subcommand(subparsers)
    for subparser in subparsers.choices.values():  # also accepted after the subcommand
        subparser.add_argument(
            "--quiet",
            action="store_true",
            default=argparse.SUPPRESS,
            help="no progress bars, warnings only",
        )
        subparser.add_argument(
            "--threads",
            type=int,
            default=argparse.SUPPRESS,
            help="torch CPU threads (default: torch's choice)",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    _set_threads(args.threads)
    try:
        return args.run(args) or EXIT_OK
    except ScnnError as exc:
        print(f"scnn: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # e.g. an output path that is a folder, a full disk
        target = exc.filename2 or exc.filename
        where = f"{target}: " if target else ""
        print(f"scnn: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("scnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
