"""Choose the support rule's defaults with one criterion over every shared sequence and detector.

Issue 4, item 4: the third rule must mine >= 5x the seed rule's hard negatives at >= its
precision on every pair, with defaults chosen without looking at any one sequence alone.

For each configuration of audit_table.py (same sequences, detectors and settings), one decoding
pass measures the support rule's evidence for every candidate it does not exempt
(``rules.support_evidence``: best NCC and tracked-box overlap in each neighbour frame, plus the
unmoved box's overlap for the variants), mines the seed rule, and judges every candidate against
the ground truth (``flickermine.evaluate._audit``, match IoU 0.5). Then, without more NCC:

1. **grid**: every ``min_tracked x max_support x support_iou`` of GRID, decided by the rule's own
   ``rules.support_decision``;
2. **criterion**, the same for every pair: (a) the number of pairs where the issue's criterion
   holds (audit_table.five_times_seed); a pair whose minable candidates hold no false positive is
   not counted, since there it holds only by mining >= 5x as many true objects; then (b) the mean
   over sequences of the mean over their detectors of the 95% Wilson lower bound of
   hard-negative precision (0 when nothing is mined): more yield at the same precision raises
   it, a true object mined lowers it, and every sequence weighs the same however many detectors
   it has. Ties go to more evidence (larger min_tracked, then smaller max_support);
3. **leave one sequence out**: the setting the criterion picks on the other sequences, scored on
   the held-out one;
4. **variants** of the rule, each at its best setting by the same criterion, with the bootstrap
   probability (blocks of 20 frames, 500 draws) that it beats the chosen setting;
5. **feasibility**: per pair, what the criterion needs and the most hard negatives that any
   setting of any variant (an oracle tuned to that pair alone) mines at the seed's precision.

Writes bench/results/support_selection.json. Takes a few minutes (the NCC of step 0);
``--evidence FILE`` keeps the measurements in FILE and reuses them on the next run.

Usage: python bench/tune_support.py [--backend opencv] [--evidence FILE] [--out PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import pickle
import sys
from pathlib import Path

import numpy as np

from _common import RESULTS, SHARED_DATA, print_table, write_json
from audit_table import configs, five_times_seed, pct

from flickermine import MiningParams, Rule
from flickermine.evaluate import _audit as audit
from flickermine.mining import _rules as rules
from flickermine.mining._backends import get_backend
from flickermine._boxes import iou_matrix
from flickermine.io._mot import DetectionFile
from flickermine.mining._miner import Miner
from flickermine.runner._loop import mine_stream
from flickermine.video import open_video

GRID = {
    "min_tracked": (1, 2, 3, 4, 5, 6, 8, 10),
    "max_support": (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5),
    "support_iou": (0.3, 0.4, 0.5, 0.6, 0.7),
}
BLOCK_FRAMES = 20
BOOTSTRAP_DRAWS = 500
Z95 = 1.959964


# -- measuring ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Pair:
    """One sequence and detector: the candidates the support rule judges (not exempt, inside
    the audited frames) and the seed rule's hard negatives. Neighbour columns are offsets
    ``-W..-1, 1..W``; frames the video lacks have NaN NCC (never tracked) and overlap 0."""

    sequence: str
    detector: str
    params: MiningParams
    frames: np.ndarray  #: (K,) 1-based
    status: np.ndarray  #: (K,) audit.TRUE / FALSE / IGNORED
    ncc: np.ndarray  #: (K, 2W)
    overlap: np.ndarray  #: (K, 2W) tracked box vs the frame's detections
    unmoved: np.ndarray  #: (K, 2W) the detection's own box vs the frame's detections
    seed_hard: np.ndarray  #: (K,) bool the seed rule's hard negatives (it never mines an exempt one)
    candidates: int  #: all candidates inside the audited frames (exempt ones too)

    @property
    def name(self) -> str:
        return f"{self.sequence}/{self.detector}"

    @property
    def false_positives(self) -> int:
        return int((self.status == audit.FALSE).sum())

    @property
    def seed(self) -> dict:
        return counts(self, self.seed_hard)


def measure(sequence, video, detector, params, gt_name, frame_range, backend) -> Pair:
    gt = audit.read_ground_truth(SHARED_DATA / sequence / gt_name, frame_range)
    source = open_video(SHARED_DATA / sequence / video)
    dets = DetectionFile(SHARED_DATA / sequence / "det" / f"{detector}.txt", frame_count=source.frame_count,
                         width=source.width, height=source.height)
    miner = Miner(params, Rule.SEED, backend)  # thresholds and clips the boxes as mining does
    grays, decided = [], []
    for step in mine_stream(source, dets, [miner]):
        if step.frame is not None:
            grays.append(step.frame.gray)
        decided += step.verdicts[0]
    boxes = [v.boxes for v in decided]
    search = get_backend(backend).ncc_search_batch
    width, window = 2 * params.window, params.window
    rows: dict[str, list] = {k: [] for k in ("frames", "status", "ncc", "overlap", "unmoved", "seed_hard")}
    for f, verdicts in enumerate(decided):
        if not len(verdicts.boxes) or not gt.covers(f + 1):
            continue
        status, _ = gt.judge(f + 1, verdicts.boxes, 0.5)
        lo, hi = max(0, f - window), min(len(grays), f + window + 1)
        height_px, width_px = grays[f].shape
        reasons = rules.exemption_reasons(verdicts.boxes, verdicts.scores, width_px, height_px, params)
        evidence = rules.support_evidence(grays[lo:hi], boxes[lo:hi], reasons, f - lo, params, search)
        columns = np.where(evidence.offsets < 0, evidence.offsets + window, evidence.offsets + window - 1)
        ncc = np.full((len(evidence.candidates), width), np.nan)
        overlap = np.zeros_like(ncc)
        unmoved = np.zeros_like(ncc)
        ncc[:, columns], overlap[:, columns] = evidence.ncc, evidence.overlap
        own = verdicts.boxes[evidence.candidates]
        for column, g in zip(columns, evidence.offsets + f):
            if len(boxes[g]) and len(own):
                unmoved[:, column] = iou_matrix(own, boxes[g]).max(axis=1)
        for key, value in (("frames", np.full(len(own), f + 1)), ("status", status[evidence.candidates]),
                           ("ncc", ncc), ("overlap", overlap), ("unmoved", unmoved),
                           ("seed_hard", verdicts.hard_negatives[evidence.candidates])):
            rows[key].append(value)
        assert verdicts.hard_negatives.sum() == rows["seed_hard"][-1].sum(), "the seed rule mined an exempt box"
    cat = {k: np.concatenate(v) if v else np.zeros((0, width) if k in ("ncc", "overlap", "unmoved") else 0) for k, v in rows.items()}
    covered = sum(len(v.boxes) for f, v in enumerate(decided) if gt.covers(f + 1))
    return Pair(sequence, detector, params, cat["frames"], cat["status"], cat["ncc"], cat["overlap"], cat["unmoved"],
                cat["seed_hard"].astype(bool), covered)


# -- the rule and its variants, from the evidence -------------------------------------------------


def share_rule(pair: Pair, setting: dict, overlap: np.ndarray | None = None, ncc_threshold: float | None = None) -> np.ndarray:
    """(K,) bool hard negatives of the support rule (rules.support_decision) at ``setting``."""
    params = dataclasses.replace(pair.params, **setting, **({"ncc_threshold": ncc_threshold} if ncc_threshold else {}))
    evidence = rules.SupportEvidence(np.arange(len(pair.frames)), np.zeros(pair.ncc.shape[1]), pair.ncc,
                                     pair.overlap if overlap is None else overlap)
    return rules.support_decision(evidence, pair.ncc.shape[1], params) == rules.Reason.ISOLATED


def graded_rule(pair: Pair, setting: dict) -> np.ndarray:
    """Support graded linearly from 0 at IoU ``low`` to 1 at ``high``; mean over tracked frames."""
    tracked = pair.ncc >= pair.params.ncc_threshold
    grade = np.clip((pair.overlap - setting["low"]) / (setting["high"] - setting["low"]), 0.0, 1.0)
    count = tracked.sum(axis=1)
    return (count >= setting["min_tracked"]) & ((grade * tracked).sum(axis=1) <= setting["max_support"] * count)


def both_sides_rule(pair: Pair, setting: dict) -> np.ndarray:
    """Isolated before and after the frame: the support share of each side with a tracked frame."""
    tracked = pair.ncc >= pair.params.ncc_threshold
    support = tracked & (pair.overlap >= setting["support_iou"])
    half = pair.ncc.shape[1] // 2
    ok = tracked.sum(axis=1) >= setting["min_tracked"]
    for side in (slice(0, half), slice(half, None)):
        count = tracked[:, side].sum(axis=1)
        ok &= support[:, side].sum(axis=1) <= setting["max_support"] * count
    return ok


def product_settings():
    for m, rho, s in itertools.product(*GRID.values()):
        yield {"min_tracked": m, "max_support": rho, "support_iou": s}


VARIANTS = {
    "the rule: partner on the tracked box": (lambda p, s: share_rule(p, s), product_settings),
    "partner on the tracked or the unmoved box": (lambda p, s: share_rule(p, s, np.maximum(p.overlap, p.unmoved)), product_settings),
    "tracked only at NCC >= 0.6": (lambda p, s: share_rule(p, s, ncc_threshold=0.6), product_settings),
    "tracked only at NCC >= 0.7": (lambda p, s: share_rule(p, s, ncc_threshold=0.7), product_settings),
    "graded support (IoU low..high)": (graded_rule, lambda: (
        {"min_tracked": m, "max_support": rho, "low": lo, "high": hi}
        for m, rho in itertools.product(GRID["min_tracked"], GRID["max_support"])
        for lo, hi in itertools.product((0.0, 0.2, 0.3, 0.4), (0.6, 0.7, 0.8, 1.0)))),
    "isolated on both sides": (both_sides_rule, product_settings),
}


# -- the criterion --------------------------------------------------------------------------------


def wilson_lower(hits: float, judged: float) -> float:
    """95% Wilson score lower bound of hits / judged; 0 when nothing was judged."""
    if judged <= 0:
        return 0.0
    p = hits / judged
    z2 = Z95 * Z95
    return (p + z2 / (2 * judged) - Z95 * np.sqrt(p * (1 - p) / judged + z2 / (4 * judged * judged))) / (1 + z2 / judged)


def counts(pair: Pair, hard: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """The audit's counts of the hard negatives ``hard`` (each row counted ``weights`` times)."""
    w = (np.ones(len(hard)) if weights is None else weights)[hard]
    status = pair.status[hard]
    judged, hits = int(w[status != audit.IGNORED].sum()), int(w[status == audit.FALSE].sum())
    return {"count": int(w.sum()), "judged": judged, "hits": hits, "precision": hits / judged if judged else None}


def score(pair: Pair, hard: np.ndarray, weights: np.ndarray | None = None) -> dict:
    hn = counts(pair, hard, weights)
    met = five_times_seed(hn, counts(pair, pair.seed_hard, weights))
    return {**hn, "met": met, "lower_bound": wilson_lower(hn["hits"], hn["judged"])}


def criterion(pairs: list[Pair], scores: list[dict]) -> tuple[int, float]:
    """(pairs where the criterion holds, of those with a false positive to mine; sequence-balanced
    mean Wilson lower bound)."""
    met = sum(s["met"] for p, s in zip(pairs, scores) if p.false_positives)
    by_sequence: dict[str, list] = {}
    for p, s in zip(pairs, scores):
        by_sequence.setdefault(p.sequence, []).append(s["lower_bound"])
    return met, float(np.mean([np.mean(v) for v in by_sequence.values()]))


def evidence_first(setting: dict) -> tuple:
    return (setting["min_tracked"], -setting["max_support"])


def choose(pairs: list[Pair], variant: str) -> tuple[dict, tuple, list[dict], np.ndarray]:
    rule, settings = VARIANTS[variant]
    best = None
    for setting in settings():
        hard = [rule(p, setting) for p in pairs]
        scores = [score(p, h) for p, h in zip(pairs, hard)]
        key = criterion(pairs, scores) + evidence_first(setting)
        if best is None or key > best[1]:
            best = (setting, key, scores, hard)
    return best


def bootstrap_wins(pairs: list[Pair], hard_a: list, hard_b: list, rng: np.random.Generator) -> float:
    """Share of block-bootstrap draws in which setting b scores higher than a on the criterion."""
    blocks = [(p.frames - 1) // BLOCK_FRAMES for p in pairs]
    wins = 0
    for _ in range(BOOTSTRAP_DRAWS):
        weights = []
        for b in blocks:
            ids = np.unique(b)
            draws = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids))
            weights.append(draws[np.searchsorted(ids, b)].astype(float))
        a = criterion(pairs, [score(p, h, w) for p, h, w in zip(pairs, hard_a, weights)])
        c = criterion(pairs, [score(p, h, w) for p, h, w in zip(pairs, hard_b, weights)])
        wins += c > a
    return wins / BOOTSTRAP_DRAWS


# -- the report -----------------------------------------------------------------------------------


def cell(s: dict) -> str:
    return f"{s['count']} / {pct(s['precision'])}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="opencv")
    parser.add_argument("--evidence", type=Path, help="keep the measurements in this file and reuse them")
    parser.add_argument("--out", default=str(RESULTS / "support_selection.json"))
    args = parser.parse_args()
    if not SHARED_DATA.exists():
        print(f"no shared data at {SHARED_DATA}", file=sys.stderr)
        return 1
    if args.evidence and args.evidence.is_file():
        pairs = pickle.loads(args.evidence.read_bytes())
    else:
        pairs = []
        for config in configs():
            pairs.append(measure(*config[:6], args.backend))
            print(f"measured {pairs[-1].name}: {len(pairs[-1].frames)} candidates judged", file=sys.stderr, flush=True)
        if args.evidence:
            args.evidence.write_bytes(pickle.dumps(pairs))

    rule = "the rule: partner on the tracked box"
    chosen, key, chosen_scores, chosen_hard = choose(pairs, rule)
    oracles = [oracle(p) for p in pairs]
    print(f"chosen defaults: {fmt(chosen)} (criterion holds on {key[0]} pairs; balanced mean lower bound {key[1]:.4f})\n")
    print_table(
        ["pair", "seed HN / prec.", "chosen HN / prec.", "5x seed", "minable", "FP in minable", "needs", "oracle at seed prec."],
        feasibility_rows(pairs, chosen_scores, oracles),
    )

    print("\nleave one sequence out (the criterion on the other sequences picks the setting):")
    loso, loso_rows = [], []
    for held_out in dict.fromkeys(p.sequence for p in pairs):
        train = [p for p in pairs if p.sequence != held_out]
        setting, train_key, _, _ = choose(train, rule)
        for p in (p for p in pairs if p.sequence == held_out):
            s = score(p, share_rule(p, setting))
            loso.append({"held_out": held_out, "pair": p.name, "setting": setting, "train_criterion": train_key[:2], **s})
            loso_rows.append([held_out, p.detector, fmt(setting), cell(s), "yes" if s["met"] else "no"])
    print_table(["held out", "detector", "setting chosen without it", "HN / prec.", "5x seed"], loso_rows)

    print("\nvariants, each at its best setting by the same criterion (P: bootstrap share of draws it beats the chosen):")
    rng = np.random.default_rng(0)
    variants, variant_rows = [], []
    for name in VARIANTS:
        setting, vkey, vscores, vhard = choose(pairs, name)
        wins = 0.0 if setting == chosen and name == rule else bootstrap_wins(pairs, chosen_hard, vhard, rng)
        variants.append({"variant": name, "setting": setting, "criterion": vkey[:2], "p_beats_chosen": wins,
                         "pairs": {p.name: s for p, s in zip(pairs, vscores)}})
        variant_rows.append([name, fmt(setting), vkey[0], f"{vkey[1]:.4f}", f"{wins:.2f}"]
                            + [cell(s) + ("" if s["met"] else "*") for s in vscores])
    print_table(["variant", "best setting", "met", "lower bd", "P"] + [short(p) for p in pairs], variant_rows)
    print("(* criterion not met)")

    write_json("support_selection", {
        "criterion": "pairs meeting 5x-seed-at-seed-precision (pairs with a false positive to mine), then the "
                     "sequence-balanced mean 95% Wilson lower bound of hard-negative precision",
        "grid": GRID, "chosen": chosen, "criterion_value": key[:2],
        "pairs": [{"pair": p.name, "params": p.params.as_dict(), "candidates": p.candidates, "minable": len(p.frames),
                   "false_positives_minable": p.false_positives, "seed": p.seed, "chosen": s,
                   "oracle_at_seed_precision": o} for p, s, o in zip(pairs, chosen_scores, oracles)],
        "leave_one_sequence_out": loso, "variants": variants,
    }, args.out)
    return 0


def fmt(setting: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in setting.items())


def short(pair: Pair) -> str:
    return f"{pair.sequence.split('-')[0]} {pair.detector.replace('opencv_', '')[:10]}"


def oracle(pair: Pair) -> dict:
    """The most hard negatives at >= the seed's precision over every setting of every variant,
    tuned to this pair alone (what no default can beat)."""
    floor = pair.seed["precision"] or 0.0
    best = {"count": 0, "precision": None}
    for name, (rule, settings) in VARIANTS.items():
        for setting in settings():
            s = score(pair, rule(pair, setting))
            if s["precision"] is not None and s["precision"] >= floor and s["count"] > best["count"]:
                best = {"count": s["count"], "precision": s["precision"], "variant": name, "setting": setting}
    return best


def feasibility_rows(pairs: list[Pair], scores: list[dict], oracles: list[dict]) -> list[list]:
    rows = []
    for p, s, best in zip(pairs, scores, oracles):
        need_count = 5 * p.seed["count"]
        floor = p.seed["precision"]
        needs = f">= {need_count} at >= {pct(floor)}" if floor is not None else f">= {need_count}"
        rows.append([p.name, cell(p.seed), cell(s), "yes" if s["met"] else "no", len(p.frames), p.false_positives,
                     needs, cell(best) if best["count"] else "0"])
    return rows


if __name__ == "__main__":
    sys.exit(main())
