"""Label config parsing and Label Studio result building for image classification.

A supported config has an ``<Image name=… value="$key"/>`` object and a single-choice ``<Choices
name=… toName=…>`` control pointing at it. The class list is the ``Choice`` values in config order
(``alias`` replaces ``value`` when given, as in LS results).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from label_studio_sdk.label_interface import LabelInterface

IMAGE_OBJECT_TAGS = ("Image",)


class LabelConfigError(ValueError):
    """The label config cannot be used by this backend; the message says why."""


@dataclass(frozen=True)
class LabelingInterface:
    image_name: str  # name of the Image object (results' to_name)
    image_key: str  # task data key holding the image URL
    choices_name: str  # name of the Choices control (results' from_name)
    classes: tuple[str, ...]

    def result_for(self, label: str) -> list[dict[str, Any]]:
        """The LS result list that selects `label`."""
        return [
            {
                "from_name": self.choices_name,
                "to_name": self.image_name,
                "type": "choices",
                "value": {"choices": [str(label)]},
            }
        ]

    def label_from_result(self, result: Any) -> str | None:
        """The chosen class of an annotation result, or None when it has none of ours."""
        if not isinstance(result, list):
            return None
        for region in result:
            if not isinstance(region, dict) or region.get("from_name") != self.choices_name:
                continue
            choices = (region.get("value") or {}).get("choices")
            if isinstance(choices, list) and len(choices) == 1 and str(choices[0]) in self.classes:
                return str(choices[0])
        return None

    def image_url(self, task: dict[str, Any]) -> str | None:
        value = (task.get("data") or {}).get(self.image_key)
        return value if isinstance(value, str) and value else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the class list as a list), so it compares equal to its stored copy."""
        data = asdict(self)
        data["classes"] = list(self.classes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelingInterface:
        return cls(
            image_name=data["image_name"],
            image_key=data["image_key"],
            choices_name=data["choices_name"],
            classes=tuple(data["classes"]),
        )


@dataclass(frozen=True)
class TaskLabel:
    task_id: int
    label: str
    lead_time: float  # seconds; NaN when unknown
    annotation_id: int


def parse_label_config(label_config: Any) -> LabelingInterface:
    """Find the Image object and the single-choice Choices control; raise LabelConfigError otherwise.

    The XML is read by label-studio-sdk's ``LabelInterface`` (the same parser LS's own tools use, so tag
    and alias handling match LS); this project's checks and messages are on top.
    """
    if not isinstance(label_config, str) or not label_config.strip():
        raise LabelConfigError("the label config is empty")
    try:
        parsed = LabelInterface(label_config)
    except Exception as error:  # lxml's syntax errors and the SDK's own, whatever their type
        raise LabelConfigError(f"the label config is not valid XML: {str(error)[:300]}") from None
    images = {
        tag.name: tag.value[1:]
        for tag in parsed.objects
        if tag.tag in IMAGE_OBJECT_TAGS and tag.name and isinstance(tag.value, str) and len(tag.value) > 1
        and tag.value.startswith("$")
    }
    if not images:
        raise LabelConfigError('the label config needs an <Image name="..." value="$field"/> object')
    problems = []
    for control in parsed.controls:
        if control.tag != "Choices":
            continue
        targets = control.to_name or []
        if len(targets) != 1 or targets[0] not in images:
            problems.append(f"Choices {control.name!r} does not point at an Image")
        elif control.attr.get("choice", "single") != "single":
            problems.append(f"Choices {control.name!r} allows several choices; only single choice works")
        elif control.attr.get("perRegion") in ("true", "True"):
            problems.append(f"Choices {control.name!r} is per region; whole-image choices are needed")
        elif len([label for label in control.labels if label]) < 2:
            problems.append(f"Choices {control.name!r} needs at least two Choice values")
        else:
            return LabelingInterface(
                image_name=targets[0],
                image_key=images[targets[0]],
                choices_name=control.name,
                classes=tuple(label for label in control.labels if label),
            )
    detail = "; ".join(problems) if problems else "there is no <Choices> control"
    raise LabelConfigError(
        f"unsupported label config: image classification with one Choices control is needed ({detail})"
    )


def task_label(task: dict[str, Any], interface: LabelingInterface) -> TaskLabel | None:
    """The label a task carries: its ground-truth annotation, else its latest one; skips are not labels."""
    usable = []
    for annotation in task.get("annotations") or []:
        if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
            continue
        label = interface.label_from_result(annotation.get("result"))
        if label is not None:
            usable.append(
                (
                    bool(annotation.get("ground_truth")),
                    str(annotation.get("updated_at") or ""),
                    int(annotation.get("id") or 0),
                    label,
                    annotation.get("lead_time"),
                )
            )
    if not usable:
        return None
    _, _, annotation_id, label, lead_time = max(usable)
    return TaskLabel(task_id=int(task["id"]), label=label, lead_time=parse_seconds(lead_time),
                     annotation_id=annotation_id)


def parse_seconds(value: Any) -> float:
    """A number of seconds > 0 (or a string of one) as a float; NaN for anything else (missing, not a number, a
    bool, not finite, 0 or less): the engine takes NaN as unknown and rejects seconds <= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return math.nan
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return math.nan
    return seconds if math.isfinite(seconds) and seconds > 0 else math.nan
