"""benchmarks/accuracy/accuracy.py: its offline detection is scnn detect's, its table mean ±
sample std over the entries with the diagnosis counts summed."""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tiny import MODEL_CLASSES as CLASSES
from tiny import random_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy"))

from ablation import window_logits  # noqa: E402
from ablation_offline import grid_of_videos  # noqa: E402
from accuracy import CPU_DEFAULT, SCNN_RELEASED, detect, table  # noqa: E402

from scnn.detect import Detector  # noqa: E402
from scnn.video import read_frames  # noqa: E402


def test_offline_detection_is_the_detectors(video, tmp_path):
    detector = Detector.load(random_model(tmp_path / "model", vote_iou=0.4), precision="fp32")
    model = detector.model
    frames = read_frames(video, size=model.clip.frame_size)
    grid = grid_of_videos({"clip one": len(frames)}, model.windows, model.fps)
    logits = {
        name: window_logits(network, grid, {"clip one": frames}, model.clip, torch.device("cpu"))
        for name, network in (("proposal", model.proposal), ("localization", model.localization))
    }
    p_action = torch.softmax(torch.from_numpy(logits["proposal"]), dim=1)[:, 1]
    half = replace(SCNN_RELEASED, proposal_threshold=float(p_action.median()))
    for inference in (CPU_DEFAULT, half):
        settings = {"proposal_threshold": inference.proposal_threshold,
                    "vote_iou": inference.vote_iou or 0.0, "nms_threshold": 0.4}  # fmt: skip
        online = detector.with_settings(**settings)(video)
        offline = detect(inference, grid, logits["localization"], logits["proposal"], CLASSES)
        assert len(online) > 5
        assert [(d.label, d.start_s, d.end_s) for d in offline] == [
            (d.label, d.start_s, d.end_s) for d in online
        ]


def test_table_gives_mean_and_sample_std_per_variant_and_summed_counts():
    rows = {
        "a": [({"m": 0.5}, np.arange(6)), ({"m": 0.7}, np.arange(6))],
        "b": [({"m": 1.5}, np.ones(6)), ({"m": 1.7}, np.ones(6))],
        "one seed": [({"m": 0.25}, np.zeros(6))],
    }
    lines = table(rows).splitlines()
    assert lines[:5] == [
        "| variant | m |",
        "|---|---|",
        "| a | 0.600 ± 0.141 |",
        "| b | 1.600 ± 0.141 |",
        "| one seed | 0.250 |",
    ]
    assert lines[-3:] == [
        "| a | 0 | 2 | 4 | 6 | 8 | 10 |",
        "| b | 2 | 2 | 2 | 2 | 2 | 2 |",
        "| one seed | 0 | 0 | 0 | 0 | 0 | 0 |",
    ]
