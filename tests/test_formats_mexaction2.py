"""MEXaction2's ViPER ground truth (.xgtf), read and scored, on files written to match its
format: the ViPER namespaces, an Information descriptor with the frame rate, descriptor
instances with framespans."""

from __future__ import annotations

import json
import pyexpat

import pytest

from scnn import cli
from scnn.errors import AnnotationError
from scnn.formats import load_ground_truth
from scnn.formats.mexaction2 import CLASSES, read_ground_truth
from scnn.records import Instance


def xgtf(filename: str, descriptors: str, framerate: str = "25.0") -> str:
    """A ViPER-GT file of one video: its Information descriptor, then ``descriptors``."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<viper xmlns="http://lamp.cfar.umd.edu/viper#" xmlns:data="http://lamp.cfar.umd.edu/viperdata#">
  <config>
    <descriptor name="Information" type="FILE">
      <attribute dynamic="false" name="FRAMERATE" type="http://lamp.cfar.umd.edu/viperdata#fvalue"/>
    </descriptor>
    <descriptor name="BullChargeCape" type="OBJECT"/>
    <descriptor name="HorseRiding" type="OBJECT"/>
    <descriptor name="Shot" type="CONTENT"/>
  </config>
  <data>
    <sourcefile filename="{filename}">
      <file id="0" name="Information">
        <attribute name="NUMFRAMES"><data:dvalue value="5000"/></attribute>
        <attribute name="FRAMERATE"><data:fvalue value="{framerate}"/></attribute>
      </file>
      {descriptors}
    </sourcefile>
  </data>
</viper>
"""


@pytest.fixture
def annotations(tmp_path):
    folder = tmp_path / "annotations"
    folder.mkdir()
    (folder / "a.xgtf").write_text(
        xgtf(
            "videos/ina_a.mp4",
            '<object framespan="26:50 101:125" id="0" name="BullChargeCape"/>'
            '<content framespan="1:5000" id="1" name="Shot"/>',
        )
    )
    (folder / "b.xgtf").write_text(
        xgtf(r"C:\mex\ina_b.mpg", '<object framespan="1:100" id="0" name="HorseRiding"/>')
    )
    return folder


def test_framespans_become_instances_in_seconds(annotations):
    gt = load_ground_truth(annotations)
    assert gt.classes == CLASSES and gt.videos == ("ina_a", "ina_b")
    assert gt.instances == (
        Instance("ina_a", 1.0, 2.0, "BullChargeCape"),  # frames 26..50 at 25 fps
        Instance("ina_a", 4.0, 5.0, "BullChargeCape"),
        Instance("ina_b", 0.0, 4.0, "HorseRiding"),  # the Shot descriptor is not a class
    )
    assert load_ground_truth(annotations / "b.xgtf").instances == gt.instances[2:]


def test_a_frame_rate_of_1_needs_the_videos_fps(tmp_path):
    path = tmp_path / "c.xgtf"
    path.write_text(xgtf("c.mp4", '<object framespan="51:75" name="HorseRiding"/>', "1.0"))
    with pytest.raises(AnnotationError, match=r"c.xgtf: no frame rate .*give the videos' fps"):
        load_ground_truth(path)
    assert read_ground_truth(path, None, fps=25.0).instances == (
        Instance("c", 2.0, 3.0, "HorseRiding"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<viper><data>", "not valid XML"),
        ("<annotations/>", "not a ViPER file"),
        (xgtf("d.mp4", '<object framespan="75:51" name="HorseRiding"/>'), "1 <= FIRST <= LAST"),
        (xgtf("d.mp4", '<object framespan="1-5" name="HorseRiding"/>'), "is not FIRST:LAST"),
        (xgtf("d.mp4", '<object framespan="" name="HorseRiding"/>'), "empty framespan"),
    ],
)
def test_bad_files_are_one_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "d.xgtf"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message) as error:
        load_ground_truth(path)
    assert str(error.value).startswith(str(path))


def test_scnn_evaluate_scores_detections_against_xgtf_files(annotations, tmp_path):
    detections = tmp_path / "detections.csv"
    detections.write_text(
        "video,start,end,label,score\n"
        "ina_a,1.0,2.0,BullChargeCape,0.9\n"  # true positive
        "ina_a,10.0,11.0,BullChargeCape,0.8\n"  # false positive
        "ina_a,4.2,5.0,BullChargeCape,0.7\n"  # true positive, IoU 0.8
        "ina_b,0.0,1.0,HorseRiding,0.5\n"  # IoU 0.25: false positive
    )
    result = tmp_path / "result.json"
    argv = ["evaluate", "--gt", str(annotations), "--pred", str(detections)]
    assert cli.main([*argv, "--protocol", "scnn", "--iou", "0.5", "--json", str(result)]) == 0
    scores = json.loads(result.read_text())
    # S-CNN's AP: the precision at each true positive, summed, over the 2 instances
    assert scores["per_class"]["BullChargeCape"] == [pytest.approx((1 / 1 + 2 / 3) / 2)]
    assert scores["per_class"]["HorseRiding"] == [0.0]
    assert scores["mAP"] == [pytest.approx((1 + 2 / 3) / 4)]


def test_an_xml_parser_without_expansion_limits_is_not_used(annotations, monkeypatch):
    """expat before 2.4.1 has no guard against entity expansion (billion laughs)."""
    monkeypatch.setattr(pyexpat, "version_info", (2, 4, 0))
    with pytest.raises(AnnotationError, match="expat 2.4.0, .* 2.4.1") as caught:
        read_ground_truth(annotations, None)
    assert str(caught.value).startswith(str(annotations / "a.xgtf"))
