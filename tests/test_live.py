"""Live detection: streams through a pipe, HTTP and standard input; detections while the stream
goes on, and at its end exactly the offline detections; bad sources end in one line."""

import contextlib
import http.server
import json
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from pause import Pause
from tiny import small_model
from videos import numbered_frames, write_video

from scnn import cli
from scnn.detect import Detector
from scnn.errors import VideoError
from scnn.live import (
    Candidate,
    LiveNms,
    latency_bound_frames,
    live_detections,
    next_window_start,
)
from scnn.pipeline import _background_chunks
from scnn.postprocess import postprocess
from scnn.records import Detection, ScoredWindows
from scnn.runtime import chunk_frames_for
from scnn.video import video_name
from scnn.windows import WindowConfig, window_grid

SETTINGS = {"proposal_threshold": 0.0, "precision": "fp32"}  # every window reaches both networks
VIDEO_FRAMES = 750  # 30 s: three decode chunks, so detections come before the end
# A stalled source is given up after this long without data; long enough that a feeding thread
# starved by a loaded machine is not taken for a stall before it has sent its part.
STALL_S = 5.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return small_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def detector(model_dir):
    return Detector.load(model_dir, **SETTINGS)


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """MPEG-TS, a container that streams: no index to seek to."""
    rng = np.random.default_rng(1)
    frames = numbered_frames(VIDEO_FRAMES, 64, 48)
    frames = frames // 2 + rng.integers(0, 128, (VIDEO_FRAMES // 25, 1, 1, 3)).repeat(25, 0)
    return write_video(tmp_path_factory.mktemp("videos") / "cam.ts", frames.astype(np.uint8))


@pytest.fixture(scope="module")
def offline(detector, stream):
    """The offline detections of the stream's file, named as the live ones."""
    found = detector(stream)
    assert len(found) > 10
    return found


def renamed(detections, name: str) -> set[Detection]:
    return {Detection(name, d.start_s, d.end_s, d.label, d.score) for d in detections}


def parsed(lines: str) -> set[Detection]:
    """JSON detection lines back to detections; every line must be one whole record."""
    found = set()
    for line in lines.splitlines():
        fields = json.loads(line)
        assert sorted(fields) == ["end", "label", "score", "start", "video"]
        found.add(Detection(fields["video"], fields["start"], fields["end"], fields["label"],
                            fields["score"]))  # fmt: skip
    return found


def feed(path: Path, data: bytes, go_on: threading.Event) -> None:
    """Write the first three quarters of ``data`` into the pipe ``path``, then wait for
    ``go_on`` and write the rest (a stream that goes on only once the test says so)."""
    with open(path, "wb") as pipe:
        pipe.write(data[: len(data) * 3 // 4])
        pipe.flush()
        go_on.wait()
        with contextlib.suppress(BrokenPipeError):  # the reader may have given up
            pipe.write(data[len(data) * 3 // 4 :])


def test_detections_arrive_while_a_pipe_streams_and_end_as_offline(
    detector, stream, offline, tmp_path
):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    first_seen = threading.Event()
    writer = threading.Thread(target=feed, args=(pipe, stream.read_bytes(), first_seen))
    writer.start()
    arrivals = []
    try:
        for found in live_detections(detector, pipe):
            first_seen.set()  # the rest of the stream is sent only now
            arrivals.append(found)
    finally:
        first_seen.set()
        writer.join()
    assert arrivals[0].frames_seen < VIDEO_FRAMES
    assert {found.detection for found in arrivals} == renamed(offline, "pipe")
    assert len(arrivals) == len(offline)


def test_each_detection_is_final_within_the_bound_unless_a_chain_holds_it(detector, stream):
    """Batch size 1: no queue waits; the bound is the grid's reach plus one chunk."""
    one = detector.with_settings(batch_size=1)
    chunk_frames = chunk_frames_for(one.device)  # as live reads the stream
    bound = latency_bound_frames(one.model.windows, one.model.nms_threshold, chunk_frames, 1)
    assert bound == 16 + chunk_frames - 1  # a 32-frame window holding a 16-frame one reaches 16
    late = []
    for found in live_detections(one, stream):
        end_frame = round(found.detection.end_s * one.model.fps)
        assert found.frames_seen - end_frame <= bound or found.chained
        late.append(found.frames_seen - end_frame)
    assert min(late) < bound // 2  # not all at the end of the stream


def serve(
    directory: Path,
    cut_at: float = 1.0,
    framing: str = "length",
    hold: threading.Event | None = None,
) -> http.server.ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 in a thread. Its response declares each file's length
    (``framing`` "length"), comes in chunks ("chunked") or just ends when the server closes
    the connection ("close"); with ``cut_at`` < 1 it sends only that fraction of the file (a
    stream cut mid-packet), and with ``hold`` it then keeps the connection open, silent, until
    ``hold`` is set (a stalled stream)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if framing == "chunked" else "HTTP/1.0"

        def do_GET(self) -> None:
            data = (directory / urlsplit(self.path).path.lstrip("/")).read_bytes()
            sent = data[: int(len(data) * cut_at)]
            self.send_response(200)
            if framing == "length":
                self.send_header("Content-Length", str(len(data)))
            if framing == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if framing != "chunked":
                self.wfile.write(sent)
                self.wfile.flush()
                if hold is not None:
                    hold.wait()
                return
            for start in range(0, len(sent), 4096):
                piece = sent[start : start + 4096]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            self.close_connection = True

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_url_over_http_gives_the_offline_detections_as_lines_on_stdout(
    model_dir, stream, offline, capsys
):
    server = serve(stream.parent)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{stream.name}?camera=1"
        argv = ["--quiet", "detect", url, "--live", "--model", str(model_dir), "-o", "-"]
        argv += ["--proposal-threshold", "0", "--precision", "fp32"]
        assert cli.main(argv) == 0
    finally:
        server.shutdown()
    shown = capsys.readouterr()
    assert parsed(shown.out) == renamed(offline, "cam")
    assert f"{len(offline)} detections in {url}" in shown.err


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_a_whole_stream_of_no_declared_length_ends_cleanly(
    model_dir, stream, offline, tmp_path, framing
):
    """Without a length, the server closing the connection (or the last chunk) is the end."""
    out = tmp_path / "live.jsonl"
    code, _ = detect_live_url(model_dir, serve(stream.parent, framing=framing), stream, out)
    assert code == 0
    assert parsed(out.read_text()) == renamed(offline, "cam")


def detect_live_url(model_dir, server, stream, out) -> tuple[int, str]:
    """``scnn detect URL --live -o OUT`` in this process, ``server`` serving ``stream``: the
    exit code and the URL."""
    url = f"http://127.0.0.1:{server.server_address[1]}/{stream.name}"
    argv = ["--quiet", "detect", url, "--live", "--model", str(model_dir), "-o", str(out)]
    argv += ["--proposal-threshold", "0", "--precision", "fp32"]
    try:
        return cli.main(argv), url
    finally:
        server.shutdown()


def test_mpeg_ts_on_standard_input(model_dir, stream, offline, tmp_path):
    out = tmp_path / "live.jsonl"
    argv = [sys.executable, "-m", "scnn", "--quiet", "--threads", "1", "detect", "-", "--live"]
    argv += ["--model", str(model_dir), "-o", str(out), "--proposal-threshold", "0"]
    argv += ["--precision", "fp32"]
    with stream.open("rb") as stdin:
        done = subprocess.run(argv, stdin=stdin, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert parsed(out.read_text()) == renamed(offline, "stdin")


def test_ctrl_c_ends_cleanly_with_whole_lines(model_dir, stream, tmp_path):
    """Ctrl-C while the second detection is on its way out, the stream still open."""
    pause = Pause(tmp_path / "pause", "scnn.live:detection_line", at_call=2)
    argv = [*pause.command, "--quiet", "--threads", "1", "detect", "-", "--live"]
    argv += ["--model", str(model_dir), "--proposal-threshold", "0", "--precision", "fp32"]
    # Ctrl-C's default action, as in a terminal: a shell starts background jobs with SIGINT
    # ignored, and Python then leaves it ignored.
    child = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    data = stream.read_bytes()
    writer = threading.Thread(
        target=write_until_closed, args=(child.stdin, data[: len(data) * 3 // 4])
    )
    writer.start()
    pause.wait(child)
    child.send_signal(signal.SIGINT)
    pause.release(child)
    lines, error = child.stdout.read(), child.stderr.read()
    assert child.wait() == 130, error.decode()
    writer.join()
    assert error.decode().strip().endswith("scnn: interrupted")
    assert len(parsed(lines.decode())) == 1


def write_until_closed(pipe, data: bytes) -> None:
    """Write ``data`` into a child's standard input, which stays open until the child ends."""
    with contextlib.suppress(BrokenPipeError):
        pipe.write(data)
        pipe.flush()


def test_a_cut_stream_keeps_the_final_detections_and_fails_in_one_line(
    model_dir, stream, offline, tmp_path, capsys
):
    out = tmp_path / "live.jsonl"
    code, url = detect_live_url(model_dir, serve(stream.parent, cut_at=0.8), stream, out)
    assert code == 1
    error = capsys.readouterr().err
    assert error.startswith(f"scnn: error: {url}: decoding failed") and error.count("\n") == 1
    kept = parsed(out.read_text())
    assert kept and kept < renamed(offline, "cam")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:1/cam.ts", "Connection refused"),
        ("http://unreachable.invalid/cam.ts", "cannot open the stream"),
    ],
)
def test_a_source_that_cannot_be_reached_is_one_line(model_dir, tmp_path, capsys, url, reason):
    out = tmp_path / "live.jsonl"
    out.write_text("an earlier result\n")
    argv = ["--quiet", "detect", url, "--live", "--model", str(model_dir), "-o", str(out)]
    assert cli.main(argv) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"scnn: error: {url}: ") and reason in error
    assert error.count("\n") == 1
    assert out.read_text() == "an earlier result\n"  # started afresh only once frames come


def test_a_source_that_is_no_video_keeps_an_earlier_result(model_dir, tmp_path, capsys):
    garbage = tmp_path / "garbage.ts"
    garbage.write_bytes(bytes(range(256)) * 64)
    out = tmp_path / "live.jsonl"
    out.write_text("an earlier result\n")
    argv = ["--quiet", "detect", str(garbage), "--live", "--model", str(model_dir), "-o", str(out)]
    assert cli.main(argv) == 1
    assert "not a readable video" in capsys.readouterr().err
    assert out.read_text() == "an earlier result\n"


def test_a_stalled_pipe_is_given_up_after_the_timeout(detector, stream, offline, tmp_path):
    """The writer sends three quarters of the stream and then nothing, its end still open."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    release = threading.Event()
    writer = threading.Thread(target=feed, args=(pipe, stream.read_bytes(), release))
    writer.start()
    kept = []
    try:
        with pytest.raises(VideoError, match=f"no data for {STALL_S:g} s"):
            for found in live_detections(detector, pipe, timeout_s=STALL_S):
                kept.append(found.detection)
    finally:
        release.set()
        writer.join()
    assert kept and set(kept) < renamed(offline, "pipe")


def test_a_stalled_url_is_given_up_after_the_timeout(detector, stream, offline):
    release = threading.Event()
    server = serve(stream.parent, cut_at=0.75, hold=release)
    url = f"http://127.0.0.1:{server.server_address[1]}/{stream.name}"
    kept = []
    try:
        with pytest.raises(VideoError, match=f"no data for {STALL_S:g} s") as caught:
            for found in live_detections(detector, url, timeout_s=STALL_S):
                kept.append(found.detection)
    finally:
        release.set()
        server.shutdown()
    assert str(caught.value).startswith(f"{url}: decoding failed at ")
    assert kept and set(kept) < renamed(offline, "cam")


def test_a_models_own_voting_is_left_out_live(stream, offline, tmp_path):
    voting = Detector.load(small_model(tmp_path / "voting", vote_iou=0.4), **SETTINGS)
    assert voting(stream) != offline  # offline, the model's voting moves boundaries
    live = {found.detection for found in live_detections(voting, stream)}
    assert live == renamed(offline, video_name(stream))


def test_options_that_need_the_whole_video_are_refused(model_dir, stream, capsys):
    base = ["--quiet", "detect", str(stream), "--live", "--model", str(model_dir)]
    assert cli.main([*base, "--top-k", "3"]) == 1
    assert cli.main([*base, "--vote-iou", "0.4"]) == 1
    assert cli.main([*base, "--report", "html"]) == 1
    assert cli.main(["--quiet", "detect", str(stream), str(stream), "--live"]) == 1
    assert cli.main(["--quiet", "detect", str(stream)]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert [e.split(": ")[2].split(" ")[0] for e in errors] == [
        "--top-k",
        "--vote-iou",
        "--live",
        "--live",
        "-o/--out",
    ]


def test_stopping_early_never_waits_for_a_decoder_that_has_finished():
    """Ctrl-C while both handoff places are full and decoding has just ended: the decoding
    thread must not wait for ever to hand over its end, and the consumer with it."""
    decoded = threading.Event()

    def three_chunks():
        yield from [np.zeros(1)] * 3
        decoded.set()  # the two chunks after the first wait in the handoff: it is full

    chunks = _background_chunks(three_chunks())
    next(chunks)
    decoded.wait()
    closing = threading.Thread(target=chunks.close, daemon=True)
    closing.start()
    closing.join(timeout=600)  # a guard against hanging the suite; it takes a moment
    assert not closing.is_alive()


def test_sources_are_named_the_same_way_every_time():
    assert video_name("videos/cam one.mp4") == "cam one"
    assert video_name("-") == "stdin"
    assert video_name("http://example.org/live/cam3.ts?token=1") == "cam3"
    assert video_name("rtsp://10.0.0.7:554/") == "10.0.0.7"
    assert video_name("udp://@:1234") == "udp"


@pytest.mark.parametrize("seed", range(6))
def test_incremental_nms_decides_as_greedy_nms_over_everything(seed):
    """Random labels and scores on a small grid, many equal scores (the tie rule) and long
    NMS chains; windows arrive as the pipeline makes them, chunk by chunk."""
    rng = np.random.default_rng(seed)
    config, chunk, frames = WindowConfig((16, 32, 64)), 40, 1200
    grid = window_grid(frames, config)
    order = np.lexsort((grid.start_frame, grid.length_frames, -(-grid.end_frame // chunk)))
    lengths, starts, ends = (a[order] for a in (grid.length_frames, grid.start_frame,
                                                 grid.end_frame))  # fmt: skip
    labels = rng.integers(0, 3, len(order))
    scores = rng.integers(1, 6, len(order)) / 5.0
    windows = ScoredWindows(np.full(len(order), "v", object), lengths, starts, ends, starts / 25,
                            ends / 25, labels, scores, ("a", "b"))  # fmt: skip
    offline = postprocess(windows, 0.3)
    nms, live, most = LiveNms(0.3, config, 25), [], 0
    none = window_grid(0, config)
    for seen in [*range(chunk, frames + 1, chunk), math.inf]:
        arrived = np.flatnonzero((ends <= seen) & (ends > seen - chunk) & (labels > 0))
        for row in arrived:
            detection = Detection("v", starts[row] / 25, ends[row] / 25, "ab"[labels[row] - 1],
                                  float(scores[row]))  # fmt: skip
            nms.add(Candidate(detection, int(row), int(starts[row]), int(ends[row])))
        decoded = None if seen == math.inf else seen
        live += [candidate.detection for candidate in nms.settle(decoded, none)]
        most = max(most, len(nms))
    assert sorted(live, key=str) == sorted(offline, key=str) and len(live) == len(set(live))
    assert most < len(window_grid(3 * 64, config))  # flat: a few longest windows' worth


def test_the_frontier_is_the_first_frame_of_the_next_window():
    config = WindowConfig((16, 32))
    for seen in range(0, 300, 7):
        later = window_grid(seen + 200, config)
        assert next_window_start(seen, config) == later.start_frame[later.end_frame > seen].min()
