"""The paper's ablations as training presets: one command per row of its table.

Every preset fine-tunes the same starting detector (``--weights``, the one that mined the videos)
with the same schedule; they differ only in the training set: the base set alone, or the base set
merged with a mined dataset of one mode (see docs/rules.md#which-frames-are-written):

    baseline               base set only, as many iterations as the others: the control that shows
                           a gain does not come from longer training
    flickers-as-positives  + ``flickers-as-positives`` frames: the hn frames with every detection,
                           flickers included, as a label (the paper's ablation; expected to hurt)
    hard-negatives         + ``hn`` frames: pseudo-positive labels, hard negatives left unlabelled,
                           so they train as background (the paper's method)
    hard-positives         + ``hp`` frames: pseudo-positives and tracked hard positives as labels
    hn+hp                  + ``hn+hp`` frames: both

The schedule is the project's default fine-tuning schedule (SGD, lr 1e-3, /10 at 10k and 20k
iterations, 30k iterations); it is the same for every preset, which is what makes the rows
comparable. Options given on the command line override it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Union

from ..errors import InputError
from ..io import _coco as coco_files

PathLike = Union[str, Path]


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    mined_mode: str | None  #: the ``flickermine mine --mode`` of the mined set merged in; None: none
    description: str
    iterations: int = 30000
    lr: float = 1e-3
    lr_steps: tuple[int, ...] = (10000, 20000)
    lr_decay: float = 0.1


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("baseline", None, "the base set alone, trained as long as the others"),
        Preset("flickers-as-positives", "flickers-as-positives", "base + hn frames with every detection as a label"),
        Preset("hard-negatives", "hn", "base + hn frames: pseudo-positives labelled, hard negatives as background"),
        Preset("hard-positives", "hp", "base + hp frames: pseudo-positives and hard positives labelled"),
        Preset("hn+hp", "hn+hp", "base + hn+hp frames"),
    )
}


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise InputError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return PRESETS[name]


def _mined_mode_of(mined: PathLike) -> str | None:
    """The mode a mined dataset was written in, from the ``run.json`` beside it (None if absent)."""
    run_file = Path(mined).parent / "run.json"
    if not run_file.is_file():
        return None
    try:
        return json.loads(run_file.read_text()).get("mode")
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{run_file}: unreadable ({error})") from None


def prepare_training_set(
    preset: Preset,
    base: PathLike,
    mined: PathLike | None,
    out_dir: PathLike,
    image_root: PathLike | None = None,
) -> tuple[Path, Path]:
    """The training file of ``preset`` and its image root: ``(train.json, images dir)``.

    ``baseline``: the base file itself, images under ``image_root`` (default: its folder). Others:
    the base merged with ``mined`` into ``out_dir/train.json`` (paths relative to ``out_dir``);
    the mined set must have been written in the preset's mode, checked against its ``run.json``.
    """
    base = Path(base)
    if preset.mined_mode is None:
        if mined is not None:
            raise InputError(f"--preset {preset.name} trains on the base set alone; drop --mined {mined}")
        return base, Path(image_root) if image_root is not None else base.parent
    if mined is None:
        raise InputError(
            f"--preset {preset.name} needs --mined: a dataset from `flickermine mine --mode {preset.mined_mode}`"
        )
    mode = _mined_mode_of(mined)
    if mode is not None and mode != preset.mined_mode:
        raise InputError(
            f"--mined {mined} was mined with --mode {mode}; --preset {preset.name} needs --mode {preset.mined_mode}"
        )
    out_dir = Path(out_dir)
    merged = out_dir / "train.json"
    coco_files.merge(base, mined, out=merged, image_root=image_root)
    return merged, out_dir
