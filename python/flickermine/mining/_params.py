"""Mining parameters, rules and verdict reasons (see docs/rules.md)."""

from __future__ import annotations

import dataclasses
import enum
import math

from ..errors import InputError


class Rule(str, enum.Enum):
    """Which flicker rule decides hard negatives."""

    SEED = "seed"  #: the authors' public miner, bugs fixed: partners among all neighbours
    TRACKLET = "tracklet"  #: the paper's wording: chained NCC tracking, partners on the track
    SUPPORT = "support"  #: isolation as a share: few trackable neighbour frames hold a matching detection


#: The rule used where none is named (CLI ``--rule``, :class:`Miner`, ``frame_verdicts``, runs):
#: the one that mines best on the validation pairs (bench/results/support_selection.json,
#: audit.json): pets09 + Faster R-CNN, 46 hard negatives at 65% precision where seed mines 1 (a
#: real person); over all ten pairs 411 at 78% against seed's 34 at 79%. See docs/rules.md.
DEFAULT_RULE = Rule.SUPPORT


class Reason(enum.IntEnum):
    """Why a candidate detection got its verdict. Only ISOLATED means hard negative."""

    ISOLATED = 0  #: no partner in any neighbour frame: hard negative
    SURE_SCORE = 1  #: exempt: score >= sure_score
    SMALL = 2  #: exempt: area < min_area
    BORDER = 3  #: exempt: an edge within `border` px of the image edge
    PARTNER = 4  #: a detection of a neighbour frame overlaps it (or its tracked box)
    APPEARANCE_CHANGED = 5  #: NCC fell below ncc_threshold before any evidence of isolation
    NO_NEIGHBOURS = 6  #: tracklet rule: the video has no neighbour frame to track into
    DUPLICATE = 7  #: isolated, but overlaps a pseudo-positive of its own frame above duplicate_iou
    #: isolated among its own class, but a detection of another class partners it: the box is
    #: consistent, its label flips (per-class mining only; a hard example of class confusion)
    LABEL_FLICKER = 8

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def is_hard_negative(self) -> bool:
        return self is Reason.ISOLATED


#: largest ``window`` (frames on each side) and ``max_gap``
MAX_WINDOW = 10_000
#: largest ``margin`` and ``border`` (px)
MAX_PIXELS = 100_000

#: The MiningParams fields the C++ core (cpp/include/verdicts.hpp ``Params``) does not take, each
#: with the reason. The one list of them: converting params for C++ (``_core.Params.from_python``)
#: fails, naming the field, on any other field the C++ does not know (and on a C++ field missing here).
PYTHON_ONLY_FIELDS: dict[str, str] = {
    "duplicate_iou": "applied after every backend's verdicts, in Python (rules.demote_duplicates)",
    "class_agnostic": "per-class pairing runs the backend once per class, in Python (rules.class_verdicts)",
}

HARD_NEGATIVE = "hard_negative"
PSEUDO_POSITIVE = "pseudo_positive"


@dataclasses.dataclass(frozen=True)
class MiningParams:
    """Every knob of the flicker rules. Pixels are image pixels; scores are the detector's.

    Defaults and meanings: docs/rules.md#parameters (the paper's and the authors' code's).
    """

    score_threshold: float = 0.8  #: detections below take no part at all
    window: int = 5  #: neighbour frames on each side
    margin: int = 100  #: px added on every side of a box to make its NCC search region
    ncc_threshold: float = 0.5  #: below it the object is considered lost (appearance changed)
    iou_threshold: float = 0.2  #: overlap that makes a neighbour detection a partner
    sure_score: float = 0.98  #: at or above it a detection is never a hard negative
    min_area: float = 1600.0  #: px^2; smaller boxes are never hard negatives
    border: int = 50  #: px; boxes with an edge closer than this to the image edge are exempt
    max_gap: int = 1  #: hard positives: most consecutive missed frames between matched ends
    min_tracked: int = 3  #: support rule: fewest neighbour frames the detection must be tracked into
    max_support: float = 0.2  #: support rule: largest share of tracked frames with a matching detection
    support_iou: float = 0.5  #: support rule: IoU of a detection with the tracked box that matches it
    #: every rule: an isolated detection overlapping a pseudo-positive of its own frame at IoU above
    #: this is a shifted second box of an object the detector found, not a hard negative (1: off)
    duplicate_iou: float = 1.0
    #: pair a detection with neighbour detections of any label (False: of its own label only, and
    #: a box partnered only by another label is a LABEL_FLICKER); detections without labels are one class
    class_agnostic: bool = False

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                value = getattr(self, name)
                raise InputError(f"MiningParams.{name} must be {expected}, got {value!r}")

        for name in ("score_threshold", "ncc_threshold", "iou_threshold", "sure_score", "min_area", "max_support", "support_iou", "duplicate_iou"):
            value = getattr(self, name)
            check(name, isinstance(value, (int, float)) and math.isfinite(value), "a finite number")
        check("class_agnostic", isinstance(self.class_agnostic, bool), "True or False")
        for name in ("window", "margin", "border", "max_gap", "min_tracked"):
            value = getattr(self, name)
            check(name, isinstance(value, int) and not isinstance(value, bool), "an integer")
        # Upper bounds keep every value (and the C++ core's index sums like center + window) far
        # from 2**31; they are far beyond any useful setting.
        check("window", 1 <= self.window <= MAX_WINDOW, f">= 1 and <= {MAX_WINDOW} (frames)")
        check("margin", 0 <= self.margin <= MAX_PIXELS, f">= 0 and <= {MAX_PIXELS} (px)")
        check("border", 0 <= self.border <= MAX_PIXELS, f">= 0 and <= {MAX_PIXELS} (px)")
        check("max_gap", 1 <= self.max_gap <= self.window, f">= 1 and <= window ({self.window})")
        check("min_area", self.min_area >= 0, ">= 0")
        check("ncc_threshold", -1.0 <= self.ncc_threshold <= 1.0, "in [-1, 1]")
        check("iou_threshold", 0.0 <= self.iou_threshold <= 1.0, "in [0, 1]")
        # Not bounded by 2 * window: the default must not make a short --window an error for the
        # other rules; the support rule simply mines nothing when it cannot track that far.
        check("min_tracked", 1 <= self.min_tracked <= 2 * MAX_WINDOW, f">= 1 and <= {2 * MAX_WINDOW} (2 * the largest window)")
        check("max_support", 0.0 <= self.max_support < 1.0, "in [0, 1)")
        check("support_iou", 0.0 < self.support_iou <= 1.0, "in (0, 1]")
        check("duplicate_iou", 0.0 <= self.duplicate_iou <= 1.0, "in [0, 1]")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
