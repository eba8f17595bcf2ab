"""The label set: what each mask value means, which labels are lesions, which regions are scored.

A model is trained on one label set, read from its training datalist: the MSD ``labels`` map (``{"0": "background",
"1": "liver", ...}``) and three optional gem3d keys:

- ``regions``: ``{name: [label values]}`` scored by Dice / HD95 (default: every non-background label on its own);
- ``lesion_labels``: labels that mask augmentation moves and previews centre on (default: none);
- ``anatomy_labels``: labels that, with the lesions, fill the whole anatomy (BraTS: 1, the brain). Empty (the
  default) when the mask labels only some structures (CT organs): then synthesis keeps the background the model
  generates, and the metrics find the anatomy from the image.

The set is written beside the weights (``label_set.json``) so that synthesis, evaluation and the app use the
model's own set whatever datalist they are given.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ..errors import Gem3dInputError
from ..io import save_json


@dataclass(frozen=True)
class LabelSet:
    names: dict  # label value -> name; 0 is the background
    regions: dict = field(default_factory=dict)  # region name -> label values
    lesion_labels: tuple = ()
    anatomy_labels: tuple = ()

    def __post_init__(self):
        try:
            names = {int(k): str(v) for k, v in self.names.items()}
            regions = {str(k): tuple(int(v) for v in vals) for k, vals in (self.regions or {}).items()}
            lesion, anatomy = tuple(int(v) for v in self.lesion_labels), tuple(int(v) for v in self.anatomy_labels)
        except (TypeError, ValueError, AttributeError) as exc:
            raise Gem3dInputError(f"label set is malformed: {exc}") from exc
        if 0 not in names or min(names) < 0:
            raise Gem3dInputError(f"label set {names} must name label 0 (background) and no negative label")
        regions = regions or {names[v]: (v,) for v in sorted(names) if v != 0}
        for what, values in [("lesion_labels", lesion), ("anatomy_labels", anatomy)] + [
            (f"region {k!r}", v) for k, v in regions.items()
        ]:
            unknown = sorted(set(values) - set(names) | ({0} & set(values)))
            if unknown:
                raise Gem3dInputError(f"label set: {what} names labels {unknown} that are not foreground labels")
        object.__setattr__(self, "names", dict(sorted(names.items())))
        object.__setattr__(self, "regions", regions)
        object.__setattr__(self, "lesion_labels", lesion)
        object.__setattr__(self, "anatomy_labels", anatomy)

    @property
    def num_labels(self) -> int:
        """One-hot width: the highest label value + 1."""
        return max(self.names) + 1

    @property
    def covers_anatomy(self) -> bool:
        """True when the mask's foreground is the whole anatomy (so the background can be zeroed)."""
        return bool(self.anatomy_labels)

    @property
    def regions_and_labels(self) -> dict:
        """The scored regions plus every foreground label on its own (``label_<name>``): what the pretraining study
        scores, where a weak segmenter may learn the anatomy long before the lesions."""
        return {**self.regions, **{f"label_{n}": (v,) for v, n in self.names.items() if v != 0}}

    @property
    def focus(self) -> tuple:
        """Labels a preview centres on: the lesions, else every foreground label."""
        return self.lesion_labels or tuple(v for v in self.names if v != 0)

    def as_dict(self) -> dict:
        return {
            "labels": {str(k): v for k, v in self.names.items()},
            "regions": {k: list(v) for k, v in self.regions.items()},
            "lesion_labels": list(self.lesion_labels),
            "anatomy_labels": list(self.anatomy_labels),
        }

    @classmethod
    def from_dict(cls, content: dict, source: str) -> "LabelSet":
        if not isinstance(content, dict) or not isinstance(content.get("labels"), dict):
            raise Gem3dInputError(
                f'{source} has no \'labels\' map (MSD style: {{"0": "background", "1": "liver", ...}}); '
                "add one so that gem3d knows the label set"
            )
        try:
            return cls(
                content["labels"],
                content.get("regions") or {},
                content.get("lesion_labels") or (),
                content.get("anatomy_labels") or (),
            )
        except Gem3dInputError as exc:
            raise Gem3dInputError(f"{source}: {exc}") from exc


# The BraTS-like label set of the demo data (and of MSD Task01 once mapped): whole tumour, tumour core, enhancing.
BRATS = LabelSet(
    {0: "background", 1: "brain", 2: "edema", 3: "necrotic_core", 4: "enhancing"},
    {"whole_tumour": (2, 3, 4), "tumour_core": (3, 4), "enhancing": (4,)},
    lesion_labels=(2, 3, 4),
    anatomy_labels=(1,),
)


def _read_json(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise Gem3dInputError(f"{what} not found: {path}")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise Gem3dInputError(f"{what} {path} is not valid JSON: {exc}") from exc


def from_datalist(datalist: str) -> LabelSet:
    """The label set a datalist declares (training takes it from its data)."""
    return LabelSet.from_dict(_read_json(datalist, "datalist"), f"datalist {datalist}")


def label_set(label_set_file: str, datalist: str) -> LabelSet:
    """The model's label set (recorded beside its weights); without that file (training from scratch), the
    datalist's."""
    if os.path.isfile(label_set_file):
        return LabelSet.from_dict(_read_json(label_set_file, "label set file"), f"label set file {label_set_file}")
    return from_datalist(datalist)


def write_label_set(labels: LabelSet, path: str) -> str:
    """Record the label set beside the weights it was trained with."""
    return save_json(labels.as_dict(), path, overwrite=True)
