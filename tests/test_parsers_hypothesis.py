"""Every annotation parser on arbitrary input: it parses, or raises AnnotationError naming the
file (and the line, where there is one) in one line; never another exception."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scnn.errors import AnnotationError
from scnn.formats import load_detections, load_ground_truth, read_class_table
from scnn.formats.windows_csv import read_windows_csv

CLASSES = ("jump", "run")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Cells that parsers meet in real files, good and bad.
TOKENS = st.sampled_from(
    [
        "v1", "video_test_0000004", "jump", "run", "swim", "background", "Ambiguous",
        "0", "1", "2", "3", "-1", "12.5", "3.0", "1e400", "-1e400", "nan", "inf", "-inf",
        "1e20", "99999999999999999999999", "0x10", "", " ", "\"", "a,b", "é", "1_0",
        "video", "start", "end", "label", "score", "index", "name", "thumos14_id",
        "window_frames", "start_frame", "end_frame", "start_s", "end_s", "loc_class",
        "loc_score",
    ]
)  # fmt: skip
LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r"])
HEADERS = st.sampled_from(
    [
        [],
        ["video", "start", "end", "label"],
        ["video", "start", "end", "label", "score"],
        ["index", "name", "thumos14_id"],
        ["video", "window_frames", "start_frame", "end_frame", "start_s", "end_s", "loc_class",
         "loc_score"],
    ]
)  # fmt: skip


@st.composite
def table_text(draw, separators=(",", " ", "\t")) -> str:
    """A header the parsers know (or none), then rows of known tokens; BOM, separators and line
    ends varied, so the parsers get past their headers and meet bad cells."""
    separator = draw(st.sampled_from(separators))
    rows = [draw(HEADERS), *draw(st.lists(st.lists(TOKENS, max_size=9), max_size=8))]
    text = draw(LINE_ENDS).join(separator.join(row) for row in rows)
    return ("\ufeff" if draw(st.booleans()) else "") + text


ANY_TEXT = st.one_of(st.text(max_size=300), table_text())
ANY_BYTES = st.one_of(st.binary(max_size=300), ANY_TEXT.map(lambda t: t.encode("utf-8")))

# JSON shaped like the ActivityNet files, any level possibly of the wrong type or missing.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | TOKENS
)
ENTRY = SCALARS | st.fixed_dictionaries(
    {},
    optional={
        "segment": SCALARS | st.lists(SCALARS, max_size=3),
        "label": SCALARS,
        "score": SCALARS,
    },
)
VIDEO = SCALARS | st.fixed_dictionaries(
    {},
    optional={
        "annotations": SCALARS | st.lists(ENTRY, max_size=3),
        "subset": SCALARS | st.just("training"),
        "duration": SCALARS,
    },
)
GT_DOCUMENT = st.fixed_dictionaries(
    {}, optional={"database": SCALARS | st.dictionaries(TOKENS, VIDEO, max_size=3)}
)
RESULTS_DOCUMENT = st.fixed_dictionaries(
    {},
    optional={
        "results": SCALARS
        | st.dictionaries(TOKENS, SCALARS | st.lists(ENTRY, max_size=3), max_size=3)
    },
)
ANY_JSON = st.one_of(
    GT_DOCUMENT.map(json.dumps),  # NaN and Infinity as Python's json writes them
    RESULTS_DOCUMENT.map(json.dumps),
    ANY_TEXT,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("parsers")


def assert_parses_or_names_the_file(read, path: Path, text: bytes, stored: bytes = b"") -> None:
    """``read`` the file holding ``stored`` (default: ``text``, uncompressed): it parses, or
    its AnnotationError names it, and a line within ``text``."""
    path.write_bytes(stored or text)
    try:
        read(path)
    except AnnotationError as exc:
        assert exc.path in (str(path), str(path.parent)), exc
        assert "\n" not in str(exc)
        if exc.line is not None:
            assert 1 <= exc.line <= text.count(b"\n") + text.count(b"\r") + 1, exc


@SETTINGS
@given(data=ANY_BYTES, classes=st.sampled_from([None, CLASSES]))
def test_thumos14_submission(folder, data, classes):
    assert_parses_or_names_the_file(
        lambda p: load_detections(p, classes), folder / "submission.txt", data
    )


@SETTINGS
@given(data=ANY_BYTES, classes=st.sampled_from([None, CLASSES]))
def test_detections_csv(folder, data, classes):
    assert_parses_or_names_the_file(
        lambda p: load_detections(p, classes, {1: "jump", 7: "run"}), folder / "det.csv", data
    )


@SETTINGS
@given(text=ANY_JSON, classes=st.sampled_from([None, CLASSES]))
def test_detections_json(folder, text, classes):
    assert_parses_or_names_the_file(
        lambda p: load_detections(p, classes), folder / "det.json", text.encode()
    )


@SETTINGS
@given(text=ANY_JSON, subset=st.sampled_from([None, "training"]))
def test_activitynet_ground_truth(folder, text, subset):
    assert_parses_or_names_the_file(
        lambda p: load_ground_truth(p, subset), folder / "gt.json", text.encode()
    )


@SETTINGS
@given(data=ANY_BYTES, classes=st.sampled_from([None, CLASSES]))
def test_csv_ground_truth(folder, data, classes):
    assert_parses_or_names_the_file(
        lambda p: load_ground_truth(p, classes=classes), folder / "gt.csv", data
    )


@SETTINGS
@given(data=ANY_BYTES, id_column=st.sampled_from(["index", "thumos14_id"]))
def test_class_table(folder, data, id_column):
    assert_parses_or_names_the_file(
        lambda p: read_class_table(p, id_column), folder / "classes.csv", data
    )


@SETTINGS
@given(data=ANY_BYTES, compress=st.booleans())
def test_windows_csv(folder, data, compress):
    name = "windows.csv.gz" if compress else "windows.csv"
    stored = gzip.compress(data) if compress and data[:1] != b"\x1f" else data  # or garbage .gz
    assert_parses_or_names_the_file(
        lambda p: read_windows_csv(p, CLASSES), folder / name, data, stored
    )


@SETTINGS
@given(data=ANY_BYTES, with_ambiguous=st.booleans())
def test_thumos14_folder(tmp_path_factory, data, with_ambiguous):
    root = tmp_path_factory.mktemp("thumos14")
    good = b"video_validation_0000051 12.5 20.1\n"
    (root / "Jump_val.txt").write_bytes(good)
    if with_ambiguous:
        (root / "Ambiguous_val.txt").write_bytes(good)
    path = root / "Run_val.txt"
    path.write_bytes(data)
    try:
        load_ground_truth(root)
    except AnnotationError as exc:
        assert exc.path == str(path), exc  # only Run_val.txt can be wrong
        assert "\n" not in str(exc)
