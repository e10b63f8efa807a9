"""ABLATIONS.md and its figures (beside this file) from the cached results of ablation.py.

Every number is a mean ± sample standard deviation over seeds of per-seed results; the
verdict on each claim compares the two variants seed by seed (paired differences).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from offline_detection import EVAL_IOUS, PR_IOU, PROTOCOLS

from scnn.fileio import atomic_write_bytes, atomic_write_text

MIN_SEEDS_FOR_VERDICT = 3
NOT_HOLD = "**does not hold**"
HEADLINE_IOU = 0.5
# (claim of the paper or question of the issue, variant that should win, variant it beats)
CLAIMS = (
    ("the proposal network improves localization", "full", "no_proposal"),
    ("the overlap loss beats the classification network", "full", "classification"),
    ("the overlap loss beats λ = 0 at equal training", "full", "loc_lambda0"),
    ("the window-length prior improves localization", "full", "no_prior"),
    ("NMS at IoU − 0.1 beats a fixed 0.4 (benchmark habit)", "full", "nms_fixed_0.4"),
    ("proposal threshold 0.7 beats 0.5", "full", "proposal_0.5"),
    ("proposal threshold 0.7 beats 0.9", "full", "proposal_0.9"),
    ("motion matters: C3D beats a single frame", "full", "single_frame"),
    ("headroom: the oracle beats S-CNN", "oracle", "full"),
    ("the prior helps even perfect window scores", "oracle", "oracle_no_prior"),
    # the same with the prior off (see ablation.VARIANTS)
    ("prior off: the proposal network improves localization", "no_prior", "no_proposal_no_prior"),
    (
        "prior off: the overlap loss beats the classification network",
        "no_prior",
        "classification_no_prior",
    ),
    ("prior off: the overlap loss beats λ = 0", "no_prior", "loc_lambda0_no_prior"),
    ("prior off: NMS at IoU − 0.1 beats a fixed 0.4", "no_prior", "nms_fixed_0.4_no_prior"),
    ("prior off: proposal threshold 0.7 beats 0.5", "no_prior", "proposal_0.5_no_prior"),
    ("prior off: proposal threshold 0.7 beats 0.9", "no_prior", "proposal_0.9_no_prior"),
    ("prior off: motion matters", "no_prior", "single_frame_no_prior"),
    ("prior off: headroom, the oracle beats S-CNN", "oracle_no_prior", "no_prior"),
)
PIPELINE_FIGURE = (
    "full",
    "no_proposal",
    "classification",
    "no_prior",
    "nms_fixed_0.4",
    "single_frame",
    "oracle",
)
LINE_STYLES = {"oracle": "--", "single_frame": ":"}  # the bounds, told apart from variants
LOSS_FIGURE = (
    "full",
    "loc_lambda0",
    "loc_lambda0.5",
    "loc_lambda2",
    "loc_alpha0.125",
    "loc_alpha0.5",
    "loc_alpha1",
)


def load_results(work: Path, variant: str) -> list[dict[str, Any]]:
    """The variant's result of every seed run so far, by seed."""
    paths = sorted((work / "results" / variant).glob("seed*.json"))
    records = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    return sorted(records, key=lambda r: r["seed"])


def mean_std(values: Sequence[float]) -> str:
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return f"{values.mean():.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def _map(records: list[dict], protocol: str) -> np.ndarray:
    """``(seeds, IoUs)`` mAP."""
    return np.array([r["mAP"][protocol] for r in records])


def map_table(results: dict[str, list[dict]], variants, protocol: str, times: bool) -> list[str]:
    header = "| # | variant | seeds | " + " | ".join(f"@{t:g}" for t in EVAL_IOUS) + " | avg |"
    rule = "|---|---|---|" + "---|" * (len(EVAL_IOUS) + 1)
    if times:
        header += " train s | detect s | post s |"
        rule += "---|---|---|"
    lines = [header, rule]
    for name, question, description in variants:
        records = results[name]
        if not records:
            continue
        table = _map(records, protocol)
        cells = [mean_std(table[:, i]) for i in range(len(EVAL_IOUS))]
        cells.append(mean_std(table.mean(axis=1)))
        row = f"| {question} | {description} (`{name}`) | {len(records)} | " + " | ".join(cells)
        if times:
            row += " | " + " | ".join(
                f"{np.mean([r[key] for r in records]):.1f}"
                for key in ("train_s", "detect_s", "post_s")
            )
        lines.append(row + " |")
    return lines


def claims_table(results: dict[str, list[dict]]) -> tuple[list[str], list[str]]:
    """The paired comparison behind each claim, and one sentence per claim for the reading."""
    at = EVAL_IOUS.index(HEADLINE_IOU)
    lines = [
        f"| claim | A − B: mAP@{HEADLINE_IOU:g} (`scnn`) | A − B: avg mAP 0.1–0.7 (`scnn`) "
        "| seeds where A > B | verdict |",
        "|---|---|---|---|---|",
    ]
    sentences, failed = [], []
    for claim, winner, loser in CLAIMS:
        a, b = results[winner], results[loser]
        seeds = sorted({r["seed"] for r in a} & {r["seed"] for r in b})
        if not seeds:
            continue
        a = [r for r in a if r["seed"] in seeds]
        b = [r for r in b if r["seed"] in seeds]
        diff = _map(a, "scnn") - _map(b, "scnn")
        headline, average = diff[:, at], diff.mean(axis=1)
        wins = int((average > 0).sum())
        verdict = _verdict(average)
        lines.append(
            f"| {claim} (A = `{winner}`, B = `{loser}`) | {mean_std(headline)} "
            f"| {mean_std(average)} | {wins}/{len(seeds)} | {verdict} |"
        )
        if verdict == NOT_HOLD:
            failed.append(claim)
        sentences.append(
            f"- *{claim}*: {verdict} (avg mAP difference {mean_std(average)}, "
            f"A ahead in {wins} of {len(seeds)} seeds)."
        )
    if failed:
        sentences.insert(0, "Does not hold on this benchmark: " + "; ".join(failed) + ".")
    return lines, sentences


def _verdict(differences: np.ndarray) -> str:
    """holds: A ahead on average and in every seed; does not hold: A not ahead on average;
    mixed otherwise. Fewer than MIN_SEEDS_FOR_VERDICT seeds: not judged."""
    if len(differences) < MIN_SEEDS_FOR_VERDICT:
        return f"not judged ({len(differences)} seed)"
    if differences.mean() <= 0:
        return NOT_HOLD
    if (differences > 0).all():
        return "holds"
    return "mixed"


def recall_table(work: Path) -> list[str]:
    paths = sorted((work / "results" / "proposal_recall").glob("seed*.json"))
    runs = [json.loads(p.read_text(encoding="utf-8"))["rows"] for p in paths]
    if not runs:
        return []
    numbers = runs[0][0]["average_numbers"]
    lines = [
        "| P(action) ≥ | windows kept | kept per video | "
        + " | ".join(f"AR@{n}" for n in numbers)
        + " | recall@0.5, all kept |",
        "|---|---|---|" + "---|" * (len(numbers) + 1),
    ]
    for row in range(len(runs[0])):
        rows = [run[row] for run in runs]
        recall = np.array([r["average_recall"] for r in rows])
        cells = [
            f"{rows[0]['threshold']:g}",
            mean_std([r["kept_fraction"] for r in rows]),
            mean_std([r["kept_per_video"] for r in rows]),
            *(mean_std(recall[:, i]) for i in range(len(numbers))),
            mean_std([r["recall_all_at_0.5"] for r in rows]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _save(figure: Figure, path: Path) -> None:
    """Write a PNG, drawn without pyplot so the process's matplotlib state is left alone."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def without_prior(name: str) -> str:
    """The variant that differs from ``name`` only in having the prior off."""
    return {"full": "no_prior", "oracle": "oracle_no_prior"}.get(name, f"{name}_no_prior")


def plot_map_vs_iou(results: dict[str, list[dict]], protocol: str, path: Path) -> None:
    figure = Figure(figsize=(11, 8.4))
    axes = figure.subplots(2, 2, sharey=True)
    pipeline_off = [without_prior(name) for name in PIPELINE_FIGURE if name != "no_prior"]
    for ax, names, title in (
        (axes[0, 0], PIPELINE_FIGURE, "pipeline variants and bounds, prior on"),
        (axes[0, 1], LOSS_FIGURE, "overlap loss λ, α, prior on"),
        (axes[1, 0], pipeline_off, "pipeline variants and bounds, prior off"),
        (axes[1, 1], [without_prior(name) for name in LOSS_FIGURE], "λ, α, prior off"),
    ):
        for name in names:
            if results.get(name):
                table = _map(results[name], protocol)
                std = table.std(axis=0, ddof=1) if len(table) > 1 else None
                ax.errorbar(
                    EVAL_IOUS,
                    table.mean(axis=0),
                    yerr=std,
                    label=name,
                    capsize=2,
                    linestyle=LINE_STYLES.get(name.removesuffix("_no_prior"), "-"),
                )
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("evaluation IoU")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"mAP ({protocol} protocol), mean ± std over seeds")
    figure.tight_layout()
    _save(figure, path)


def plot_pr_curves(results: dict[str, list[dict]], path: Path) -> None:
    figure = Figure(figsize=(6, 4.5))
    ax = figure.subplots()
    for name in PIPELINE_FIGURE:
        if results.get(name):
            curve = results[name][0]["pr_curve"]
            ax.plot(
                curve["recall"],
                curve["precision"],
                label=name,
                drawstyle="steps-post",
                linestyle=LINE_STYLES.get(name.removesuffix("_no_prior"), "-"),
            )
    seed = next((r[0]["seed"] for r in results.values() if r), 0)
    ax.set_title(f"all classes pooled, IoU {PR_IOU:g}, seed {seed}", fontsize="medium")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    figure.tight_layout()
    _save(figure, path)


def _discussion(markdown: Path) -> list[str]:
    """The hand-written "## Discussion" section of an earlier report, kept when the tables
    are rewritten (it reads one run's numbers: revisit it after a new run)."""
    if not markdown.is_file():
        return []
    text = markdown.read_text(encoding="utf-8")
    start, end = text.find("## Discussion"), text.find("## Running it")
    return text[start:end].split("\n")[:-1] if 0 <= start < end else []


def write_report(
    work: Path,
    markdown: Path,
    figures: Path,
    header: dict[str, Any],
    variants: Sequence[tuple[str, str, str]],
) -> None:
    """Write ``markdown`` and the PNGs in ``figures`` from everything cached under ``work``."""
    results = {name: load_results(work, name) for name, _, _ in variants}
    for protocol in PROTOCOLS:
        plot_map_vs_iou(results, protocol, figures / f"map_vs_iou_{protocol}.png")
    plot_pr_curves(results, figures / "pr_curves.png")
    relative = Path("ablation_figures") if figures.parent == markdown.parent else figures
    claims, sentences = claims_table(results)
    seconds: dict[str, float] = {"train": 0.0, "score": 0.0}
    for path in work.glob("seed*/times.json"):
        for key, value in json.loads(path.read_text(encoding="utf-8")).items():
            seconds[key.split("/")[0]] += value
    synth = dataclasses.asdict(header["synth"])
    lines = [
        "# Ablations on the synthetic benchmark",
        "",
    ]
    if header["budget"] == "tiny":
        lines += [
            "> **Tiny-budget smoke run.** A toy dataset, a few dozen training steps, one seed: "
            "this run only proves that the harness works end to end. Its numbers say nothing "
            "about the paper's claims; the verdicts below are left unjudged on purpose.",
            "",
        ]
    lines += [
        f"Written by `{header['command']}` on {datetime.date.today().isoformat()} "
        f"({header['machine']}, device {header['device']}). Budget `{header['budget']}`, "
        f"seeds {header['seeds']}. Compute over all seeds: training {seconds['train']:.0f} s, "
        f"scoring {seconds['score']:.0f} s (wall, as measured when each step ran).",
        "",
        "## Protocol",
        "",
        f"- Data: `scnn.synth` with {synth['num_classes']} classes, "
        f"{synth['train_videos']}/{synth['val_videos']}/{synth['test_videos']} "
        f"train/val/test videos of {synth['duration_range_s'][0]:g}–"
        f"{synth['duration_range_s'][1]:g} s, data seed {synth['seed']}; the same data for "
        "every training seed (seeds change initialisation, dropout and the clip draws).",
        "- Training: `configs/synthetic_cpu.toml`"
        + (f" with {header['overrides']}" if header["overrides"] else "")
        + "; every network trained once per seed and reused. λ/α variants retrain only the "
        "localization stage from the same classification weights.",
        "- Detection: each network scores every test window once; proposal threshold, prior "
        "and NMS applied offline (identical to `scnn detect`, see "
        "tests/test_offline_detection.py). Proposal threshold 0.7, prior on, NMS at "
        "evaluation IoU − 0.1 (the authors' rule) unless the row says otherwise.",
        "- Oracle: every grid window labelled with the class of the instance it overlaps most, "
        "score = that IoU (windows overlapping nothing are background), then the same "
        "post-processing. Single frame: a 2-D CNN on the middle frame of each window "
        "(benchmarks/accuracy/single_frame.py), same samples, steps and pipeline.",
        "- mAP at IoU 0.1…0.7 under the `scnn` protocol (the paper's: non-interpolated AP, "
        "ground-truth-driven matching) and the `activitynet` protocol; mean ± sample std "
        "over seeds. avg = mean over the seven IoUs.",
        "- Times (mean over seeds, wall seconds on this machine): *train* = training of every "
        "network the row uses (shared networks counted in each row); *detect* = proposal "
        "network on every window + localization network on the windows that pass; *post* = "
        "post-processing and evaluation of the row.",
        "",
        "## mAP, `scnn` protocol",
        "",
        *map_table(results, variants, "scnn", times=True),
        "",
        "## mAP, `activitynet` protocol",
        "",
        *map_table(results, variants, "activitynet", times=False),
        "",
        "## Proposal stage: recall (AR@AN, tIoU 0.5:0.95) by proposal threshold",
        "",
        *recall_table(work),
        "",
        "## Claims, seed by seed",
        "",
        f"Verdict rule: *holds* when A leads B in average mAP on every seed; *does not hold* "
        f"when A does not lead on average; *mixed* otherwise; fewer than "
        f"{MIN_SEEDS_FOR_VERDICT} seeds are not judged.",
        "",
        *claims,
        "",
        "## Reading",
        "",
        *sentences,
        "",
        *_discussion(markdown),
        "## Running it",
        "",
        "    python3 benchmarks/accuracy/ablation.py --budget tiny --threads 1  # smoke: ~1.5 min",
        "    python3 benchmarks/accuracy/ablation.py --budget full --threads 2  # 3 seeds: 1.5-2 h",
        "",
        "The full budget trains 9 C3D stages (1200 steps of 16 clips in fp32, 2.3–2.7 min "
        "each on 2 quiet cores) and 2 single-frame networks per seed and scores the 8,706 "
        "windows of the 8 test videos with 11 networks (4.4 min): about 30 min per seed on 2 "
        "quiet cores (`--device cuda` trains and scores on a GPU). Interrupt it at any time; "
        "the same command resumes (finished stages, score arrays and results are cached "
        "under `runs/ablation-full/`); variants added later are evaluated from the cached "
        "scores in seconds.",
        "",
        "## Figures",
        "",
        f"![mAP vs IoU, scnn]({relative}/map_vs_iou_scnn.png)",
        f"![mAP vs IoU, activitynet]({relative}/map_vs_iou_activitynet.png)",
        f"![precision-recall]({relative}/pr_curves.png)",
        "",
    ]
    atomic_write_text(markdown, "\n".join(lines))
