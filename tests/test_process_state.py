"""A library call leaves the process as it found it: detection (in lanes, which share out
torch's threads), feature extraction and a short training keep torch's thread count, its
global random state and glibc's malloc settings; such settings are the command's (cli/)."""

from __future__ import annotations

import json

import pytest
from page_faults import run_child
from tiny import SYNTH

from scnn.allocator import keep_large_allocations
from scnn.synth import generate

# Runs each library call between two looks at torch's thread count and global random state,
# then counts the page faults of allocating and freeing large arrays (tests/page_faults.py:
# thousands per round with glibc's default settings, a few once scnn.allocator has set them);
# last, as a control, the same count after the allocator is set.
CHILD = """
import json, sys
from pathlib import Path
import torch
from page_faults import faults_per_round
from scnn import detect, lanes, stages, train
from scnn.allocator import keep_large_allocations
from scnn.config import config_from_dict
from scnn.features import Extractor, FeatureConfig, model_source
from tiny import TINY

model, video, synth, work = map(Path, sys.argv[1:])
torch.set_num_threads(2)
lanes.LANE_MIN_S = 1.0  # lanes on a short video too
used_lanes = []
real_score_lanes = detect.score_lanes
def score_lanes(video, ends, *args):
    used_lanes.append(len(ends))
    return real_score_lanes(video, ends, *args)
detect.score_lanes = score_lanes

report = {}
def check(name, call):
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    call()
    same_rng = torch.equal(torch.get_rng_state(), rng)
    report[name] = {"threads": torch.get_num_threads() == threads, "rng": same_rng}

def short_training():
    config = config_from_dict({**TINY, "steps": 2, "log_every": 1, "checkpoint_every": 2})
    annotations, videos = synth / "annotations.json", synth / "videos"
    data = stages.prepare_data(config, annotations, videos, work / "cache", progress=False)
    train.train(stages.PROPOSAL, config, data, work / "run", progress=False)

check("detect", lambda: detect.Detector.load(model, proposal_threshold=0.0, lanes=2)(video))
extractor = lambda: Extractor(model_source(model), FeatureConfig())(video, work / "f.npy")
check("features", extractor)
check("train", short_training)
report["lanes"] = used_lanes
report["faults"] = faults_per_round()
keep_large_allocations()
report["faults_once_set"] = faults_per_round()
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, SYNTH, quiet=True)
    return root


@pytest.mark.skipif(not keep_large_allocations(), reason="malloc is not glibc's")
def test_detection_features_and_training_leave_threads_rng_and_allocator_alone(
    model_dir, video, synth_root, tmp_path
):
    child = run_child(CHILD, str(model_dir), str(video), str(synth_root), str(tmp_path))
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.splitlines()[-1])
    assert report["lanes"] == [2]  # detection ran in two lanes, each with its share of threads
    for call in ("detect", "features", "train"):
        assert report[call] == {"threads": True, "rng": True}, call
    assert report["faults"] > 1000  # glibc's default: fresh pages every round
    assert report["faults_once_set"] < 20  # the probe sees the setting when it is made
