"""ls_backend.labeling: which label configs work, result building, labels from annotations."""

import math

import pytest

from ls_backend.labeling import LabelConfigError, LabelingInterface, parse_label_config, task_label

DIGITS = (
    '<View><Image name="img" value="$image"/><Header value="Digit?"/>'
    '<Choices name="digit" toName="img"><Choice value="0"/><Choice value="1"/><Choice value="2"/></Choices></View>'
)


def test_image_classification_config_is_parsed():
    interface = parse_label_config(DIGITS)
    assert interface == LabelingInterface(
        image_name="img", image_key="image", choices_name="digit", classes=("0", "1", "2")
    )


def test_alias_replaces_value_and_interface_round_trips():
    config = (
        '<View><Image name="i" value="$url"/><Choices name="c" toName="i" choice="single">'
        '<Choice value="Cat" alias="cat"/><Choice value="Dog"/></Choices></View>'
    )
    interface = parse_label_config(config)
    assert interface.classes == ("cat", "Dog")
    assert LabelingInterface.from_dict(interface.to_dict()) == interface
    assert interface.to_dict()["classes"] == ["cat", "Dog"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("", "empty"),
        ("<View><Image", "not valid XML"),
        (
            '<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>',
            "needs an <Image",
        ),
        ('<View><Image name="i" value="$image"/></View>', "no <Choices> control"),
        (
            '<View><Image name="i" value="$image"/><Choices name="c" toName="i" choice="multiple">'
            '<Choice value="a"/><Choice value="b"/></Choices></View>',
            "several choices",
        ),
        (
            '<View><Image name="i" value="$image"/><Choices name="c" toName="i"><Choice value="a"/></Choices></View>',
            "at least two",
        ),
        (
            '<View><Image name="i" value="$image"/><Text name="t" value="$t"/><Choices name="c" toName="t">'
            '<Choice value="a"/><Choice value="b"/></Choices></View>',
            "does not point at an Image",
        ),
    ],
)
def test_unsupported_configs_say_why(config, message):
    with pytest.raises(LabelConfigError, match=message):
        parse_label_config(config)


def test_result_round_trip_and_foreign_results_ignored():
    interface = parse_label_config(DIGITS)
    result = interface.result_for("2")
    assert result == [{"from_name": "digit", "to_name": "img", "type": "choices", "value": {"choices": ["2"]}}]
    assert interface.label_from_result(result) == "2"
    assert interface.label_from_result([{"from_name": "other", "value": {"choices": ["2"]}}]) is None
    assert interface.label_from_result([{"from_name": "digit", "value": {"choices": ["7"]}}]) is None
    assert interface.label_from_result("garbage") is None


def annotation(id_, label, *, cancelled=False, ground_truth=False, updated="2026-01-01T00:00:00Z", lead_time=4.0):
    result = (
        []
        if label is None
        else [{"from_name": "digit", "to_name": "img", "type": "choices", "value": {"choices": [label]}}]
    )
    return {
        "id": id_,
        "result": result,
        "was_cancelled": cancelled,
        "ground_truth": ground_truth,
        "updated_at": updated,
        "lead_time": lead_time,
    }


def test_task_label_skips_are_not_labels():
    interface = parse_label_config(DIGITS)
    assert task_label({"id": 1, "annotations": [annotation(5, "1", cancelled=True)]}, interface) is None
    assert task_label({"id": 1, "annotations": []}, interface) is None


def test_task_label_prefers_ground_truth_then_latest():
    interface = parse_label_config(DIGITS)
    task = {
        "id": 9,
        "annotations": [
            annotation(1, "0", updated="2026-01-02T00:00:00Z"),
            annotation(2, "1", updated="2026-01-03T00:00:00Z", lead_time=None),
        ],
    }
    label = task_label(task, interface)
    assert (label.task_id, label.label, label.annotation_id) == (9, "1", 2)
    assert math.isnan(label.lead_time)
    task["annotations"].append(annotation(3, "2", ground_truth=True, updated="2025-01-01T00:00:00Z", lead_time=7.5))
    label = task_label(task, interface)
    assert (label.label, label.lead_time) == ("2", 7.5)
    task["annotations"][-1]["lead_time"] = 0  # the engine rejects 0 s: unknown, not a failed job
    assert math.isnan(task_label(task, interface).lead_time)
