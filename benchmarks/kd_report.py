"""The report of benchmarks/kd_bench.py: <results>/<bench>.{md,csv,png} from the per-run JSONs of one preset.
Only reads (the JSONs, the teacher cache, the local run folders for the unfinished runs): ``--report-only``
rebuilds the committed pages byte for byte."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from kd_presets import BENCHES, NO_TEACHER, Bench
from kd_runs import epoch_timing, rel, results_rows


def load_teachers(results: Path, bench: Bench) -> list[dict]:
    """The teachers' val metrics, <results>/<bench>/teacher.json: a list, one entry per teacher file."""
    path = results / bench.name / "teacher.json"
    if not path.exists():
        return []
    cached = json.loads(path.read_text())
    return [cached] if isinstance(cached, dict) else cached  # a dict: the single-teacher format of the first runs


def mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    if not n:
        return float("nan"), float("nan")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, std


def fmt(mean: float, std: float, digits: int = 3) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def signed(x: float, scale: float = 100.0) -> str:
    return "–" if math.isnan(x) else f"{x * scale:+.1f}"


def load_summaries(results: Path, bench: Bench) -> dict[str, list[dict]]:
    """{label: runs sorted by seed}, labels in arm order, each arm before its variants."""
    by_label: dict[str, list[dict]] = {}
    for path in sorted((results / bench.name).glob("*-seed*.json")):
        s = json.loads(path.read_text())
        by_label.setdefault(s.get("label", s["arm"]), []).append(s)
    arms = bench.arms
    order = sorted(by_label, key=lambda lb: (arms.index(lb.split("@")[0]) if lb.split("@")[0] in arms else len(arms),
                                             "@" in lb, lb))
    return {lb: sorted(by_label[lb], key=lambda s: s["seed"]) for lb in order}


def is_no_teacher_recipe(runs: list[dict]) -> bool:
    """A candidate for 'best no-teacher': a no-teacher arm trained as the recipe says (FP32, no extra flags)."""
    return runs[0]["arm"] in NO_TEACHER and not runs[0].get("extra_args")


def in_progress(runs: Path | None, by_arm: dict, bench: Bench) -> list[str]:
    """Markdown lines for run directories without a summary JSON (epochs done, best mAP50-95 so far)."""
    if runs is None or not runs.is_dir():
        return []
    lines = []
    for label_dir in sorted(p for p in runs.iterdir() if p.is_dir() and p.name.split("@")[0] in bench.arms):
        arm = label_dir.name
        done = {r["seed"] for r in by_arm.get(arm, [])}
        for run_dir in sorted(label_dir.glob("seed*")):
            seed = run_dir.name[4:]
            if not seed.isdigit() or int(seed) in done:
                continue
            rows = results_rows(run_dir)
            best = max((float(r["metrics/mAP_0.5:0.95"]) for r in rows), default=float("nan"))
            timing = epoch_timing(run_dir)
            lines.append(f"| {arm} | {seed} | {len(rows)} | {best:.3f} | {timing['seconds_per_epoch']:.1f} "
                         f"| `{rel(run_dir / 'weights' / 'last.pt')}` |")
    if not lines:
        return []
    return ["", "## Runs not finished when this report was built (from the local run directories)", "",
            "| arm | seed | epochs done | best val mAP50-95 so far (EMA, during training) | s/epoch | resume from |",
            "|---|---|---|---|---|---|", *lines]


def arm_table(labels: list[str], stats: dict) -> list[str]:
    lines = ["| arm | seeds | mAP50 | mAP50-95 | Δ vs best no-teacher | Δ vs baseline | Δ50 vs best no-teacher "
             "| gap closed (vs best no-teacher / baseline) | s/epoch mean / median / fastest | total s/run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for arm in labels:
        st = stats[arm]
        lines.append(f"| {arm} | {st['n']} ({','.join(map(str, st['seeds']))}) | {fmt(st['mAP50'], st['mAP50_std'])} "
                     f"| {fmt(st['mAP50-95'], st['mAP50-95_std'])} | {signed(st['gain_best_nt'])} "
                     f"| {signed(st['gain_baseline'])} | {signed(st['gain50_best_nt'])} "
                     f"| {signed(st['gap_closed_best_nt'], 100)}% / {signed(st['gap_closed_baseline'], 100)}% "
                     f"| {st['s_per_epoch']:.1f} / {st['median_s_per_epoch']:.1f} / {st['min_s_per_epoch']:.1f} "
                     f"| {st['total_s']:.0f} |")
    return lines


def arm_stats(by_arm: dict, teachers: dict, teacher: dict | None) -> tuple[dict, str | None]:
    """({label: mean/std mAP, gains, gap closed, timing}, the best no-teacher label) over each label's runs."""
    stats = {}
    for arm, runs in by_arm.items():
        m50, s50 = mean_std([r["mAP50"] for r in runs])
        m, s = mean_std([r["mAP50-95"] for r in runs])
        spe, _ = mean_std([r["seconds_per_epoch"] for r in runs if not math.isnan(r["seconds_per_epoch"])])
        fastest = min((r.get("min_seconds_per_epoch", float("nan")) for r in runs), default=float("nan"))
        median, _ = mean_std([r.get("median_seconds_per_epoch", float("nan")) for r in runs])
        tot, _ = mean_std([r["total_seconds"] for r in runs])
        stats[arm] = {"n": len(runs), "seeds": [r["seed"] for r in runs], "mAP50": m50, "mAP50_std": s50,
                      "mAP50-95": m, "mAP50-95_std": s, "s_per_epoch": spe, "median_s_per_epoch": median, "min_s_per_epoch": fastest, "total_s": tot,
                      "run_s": sum(r["total_seconds"] for r in runs),
                      "cpu_s": sum(r["total_seconds"] * (r.get("threads") or 2) for r in runs)}
    no_teacher = {a: stats[a] for a in stats if is_no_teacher_recipe(by_arm[a])}
    best_nt = max(no_teacher, key=lambda a: no_teacher[a]["mAP50-95"]) if no_teacher else None
    for arm, st in stats.items():
        own = teachers.get(by_arm[arm][0].get("teacher") or "", teacher)  # a KD arm's gap is to its own teacher
        t_map = own["mAP50-95"] if own and by_arm[arm][0]["arm"] != "teacher" else float("nan")
        ref = stats[best_nt]["mAP50-95"] if best_nt else float("nan")
        base = stats["baseline"]["mAP50-95"] if "baseline" in stats else float("nan")
        st["gain_best_nt"] = st["mAP50-95"] - ref
        st["gain_baseline"] = st["mAP50-95"] - base
        st["gain50_best_nt"] = st["mAP50"] - (stats[best_nt]["mAP50"] if best_nt else float("nan"))
        st["gain50_baseline"] = st["mAP50"] - (stats["baseline"]["mAP50"] if "baseline" in stats else float("nan"))
        st["gap_closed_best_nt"] = (st["mAP50-95"] - ref) / (t_map - ref) if t_map - ref > 0 else float("nan")
        st["gap_closed_baseline"] = (st["mAP50-95"] - base) / (t_map - base) if t_map - base > 0 else float("nan")
    return stats, best_nt


def paired(runs: list[dict], reference: list[dict], key: str = "mAP50-95") -> dict:
    """Per-seed differences ``runs - reference`` on the seeds both have: mean, sample std and the two-sided 95%
    t-interval of the mean (nan with fewer than two seeds)."""
    from scipy import stats as scipy_stats

    ref = {r["seed"]: r[key] for r in reference}
    diffs = [(r["seed"], r[key] - ref[r["seed"]]) for r in runs if r["seed"] in ref]
    mean, std = mean_std([d for _, d in diffs])
    n = len(diffs)
    half = float(scipy_stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n) if n > 1 else float("nan")
    return {"n": n, "diffs": diffs, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def paired_table(by_arm: dict, labels: list[str], reference: str | None, title: str) -> list[str]:
    """Markdown: each label's per-seed mAP50-95 difference to ``reference`` (points), mean ± std, 95% interval."""
    if reference is None:
        return []
    lines = ["", f"## Paired differences vs {title} `{reference}` (mAP50-95 points, same seeds)", "",
             "Per seed: arm - reference on that seed. Interval: mean ± t(0.975, n-1) x std / sqrt(n). A gain is "
             "shown only where the whole interval is above zero.", "",
             "| arm | paired seeds | per-seed Δ | mean Δ ± std | 95% interval | verdict |", "|---|---|---|---|---|---|"]
    rows = []
    for label in labels:
        if label == reference or by_arm[label][0]["arm"] == "teacher":  # a teacher is no arm of paired seeds
            continue
        p = paired(by_arm[label], by_arm[reference])
        if not p["n"]:
            continue
        per_seed = ", ".join(f"s{seed} {d * 100:+.1f}" for seed, d in p["diffs"])
        interval = "–" if math.isnan(p["low"]) else f"[{p['low'] * 100:+.1f}, {p['high'] * 100:+.1f}]"
        verdict = ("too few seeds" if p["n"] < 2 else "gain" if p["low"] > 0 else "loss" if p["high"] < 0
                   else "no significant difference")
        rows.append(f"| {label} | {p['n']} | {per_seed} | {signed(p['mean'])} ± {p['std'] * 100:.1f} | {interval} "
                    f"| {verdict} |")
    return lines + rows if rows else []


def per_class_table(by_arm: dict, labels: list[str]) -> list[str]:
    """Markdown: AP50 per class (mean over the runs that recorded it; '–' for a class without labels)."""
    labels = [lb for lb in labels if any(r.get("per_class_AP50") for r in by_arm[lb])]
    if not labels:
        return []
    names = next(r["class_names"] for lb in labels for r in by_arm[lb] if r.get("class_names"))
    lines = ["", "## AP50 per class (val, mean over seeds)", "", "| arm | seeds | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for label in labels:
        runs = [r for r in by_arm[label] if r.get("per_class_AP50")]
        cells = []
        for i in range(len(names)):
            values = [r["per_class_AP50"][i] for r in runs if r["per_class_AP50"][i] is not None]
            cells.append(f"{sum(values) / len(values):.3f}" if values else "–")
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    return lines


def write_csv(csv_path: Path, stats: dict, teachers: dict, teacher: dict | None) -> None:
    columns = ["arm", "n", "seeds", "mAP50", "mAP50_std", "mAP50-95", "mAP50-95_std", "gain_best_nt",
               "gain_baseline", "gain50_best_nt", "gain50_baseline", "gap_closed_best_nt", "gap_closed_baseline",
               "s_per_epoch", "median_s_per_epoch", "min_s_per_epoch", "total_s", "run_s", "cpu_s"]
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for arm, st in stats.items():
            w.writerow([arm] + [" ".join(map(str, st[c])) if c == "seeds" else
                                (f"{st[c]:.5g}" if isinstance(st[c], float) else st[c]) for c in columns[1:]])
        for t in teachers.values():
            name = "teacher" if t is teacher else f"teacher {t['teacher']}"
            w.writerow([name, 1, "", f"{t['mAP50']:.5g}", "", f"{t['mAP50-95']:.5g}"] + [""] * (len(columns) - 6))


def build_report(results: Path, notes: str = "", runs_dir: Path | None = None, bench: Bench = BENCHES["bccd"]) -> Path:
    """<bench>.md / .csv / .png from the per-run JSONs under <results>/<bench>/ (plus, when ``runs_dir`` is given,
    a table of the unfinished runs found there)."""
    by_arm = load_summaries(results, bench)
    teachers = {t["teacher"]: t for t in load_teachers(results, bench)}
    shared = rel(bench.teacher) if bench.teacher else None
    # the shared teacher (or the only one) is the reference of the no-teacher arms' gap and of the figure
    teacher = teachers.get(shared) or next(iter(teachers.values()), None)
    stats, best_nt = arm_stats(by_arm, teachers, teacher)
    write_csv(results / f"{bench.name}.csv", stats, teachers, teacher)

    lines = [bench.title, "",
             f"Generated by `{bench.generator}` from the per-run JSONs in `benchmarks/results/{bench.name}/` "
             "(`--report-only` rebuilds it). mAP by val.py on each run's best.pt; mean ± sample std over seeds. "
             "Gains are in mAP points (x100) of mAP50-95 unless marked 50; *best no-teacher* is "
             f"**{best_nt or '–'}** (the no-teacher arm with the highest mean mAP50-95 so far). Gap closed = "
             "(arm - reference) / (teacher - reference) in mAP50-95, with the arm's own teacher.", ""]
    for t in teachers.values():
        lines += [f"{'Teacher' if t is teacher else 'Teacher of the `-T...` arms'} `{t['teacher']}` on {t['split']} "
                  f"at {t['imgsz']} px: mAP50 {t['mAP50']:.3f}, mAP50-95 {t['mAP50-95']:.3f} "
                  f"(`{t['val_command']}`).", ""]
    main_labels = bench.main_labels
    main = [lb for lb in stats if lb in main_labels]
    amp = "bf16 on the CPU, fp16 on CUDA" if bench.amp else "off (FP32)"
    lines += ["## Arms", "", bench.arms_intro.format(tuned=bench.tuned, tuned_variant=bench.tuned_variant, amp=amp,
                                                      imgsz=bench.imgsz, batch=bench.batch, epochs=bench.epochs), ""]
    lines += arm_table(main, stats)
    # runs of a teacher trained here and the KD runs it taught (--train-teacher): their own table
    own = [lb for lb in stats if lb not in main_labels and (
        by_arm[lb][0]["arm"] == "teacher" or by_arm[lb][0].get("teacher") not in (None, shared))]
    if own:
        lines += ["", "## KD from a teacher trained here (`--train-teacher`)", "",
                  "`teacher@<recipe>-e<epochs>`: a yolov5s trained by train.py (its own row: its val mAP by the "
                  "same protocol); `<arm>@<setting>-T<recipe>-e<epochs>`: the KD arm's default, taught by it. Gap "
                  "closed is to that teacher.", ""]
        lines += arm_table(own, stats)
    lines += paired_table(by_arm, [*main, *own], best_nt, "the best no-teacher arm")
    if best_nt != "baseline" and "baseline" in by_arm:
        lines += paired_table(by_arm, [*main, *own], "baseline", "the baseline")
    lines += per_class_table(by_arm, [*main, *own])
    lines += ["", "## Tuning sweep (what else was tried, same recipe and budget)", "",
              "`<arm>@<name>`: the arm with other options (its command is listed below). `@bf16` and `-tbf16` rows "
              "are the bf16 study of docs/bf16.md.", ""]
    lines += arm_table([lb for lb in stats if lb not in main_labels and lb not in own], stats)
    total_run = sum(st["run_s"] for st in stats.values())
    total_cpu = sum(st["cpu_s"] for st in stats.values())
    lines += ["", f"Total CPU cost of the runs so far: {total_run / 3600:.2f} h of run time (sum over runs), "
              f"{total_cpu / 3600:.2f} core-hours (run time x torch threads: 2 by default, 1 for `--threads 1` runs, "
              "which went two at a time on the 2 cores).", "",
              "Seconds per epoch: interval between results.csv rows (validation included, the first epoch of "
              "each attempt excluded). The 2-core machine is shared with other engineers' jobs, so the mean moves "
              "several-fold with their load; the fastest epoch is the closest to a quiet-machine figure. Compare "
              "arms as rough ratios only; `benchmarks/kd_step.py` is the controlled KD-overhead measurement.", "",
              f"![KD benchmark]({bench.name}.png)", "", "## Runs", "",
              "| arm | seed | mAP50 | mAP50-95 | best epoch | s/epoch mean / median / fastest | total s | threads |",
              "|---|---|---|---|---|---|---|---|"]
    for arm, runs in by_arm.items():
        for r in runs:
            lines.append(f"| {arm} | {r['seed']} | {r['mAP50']:.3f} | {r['mAP50-95']:.3f} | {r['best_epoch']} "
                         f"| {r['seconds_per_epoch']:.1f} / {r.get('median_seconds_per_epoch', float('nan')):.1f} / "
                         f"{r.get('min_seconds_per_epoch', float('nan')):.1f} | {r['total_seconds']:.0f} "
                         f"| {r.get('threads') or 2} |")
    lines += ["", "## Commands (seed 0 or the first seed; other seeds differ only in `--seed`)", ""]
    for arm, runs in by_arm.items():
        lines += [f"- **{arm}**: `{runs[0]['command']}`", f"  - eval: `{runs[0]['val_command']}`"]
        diag = runs[0].get("kd_diagnostic") or []
        for d in diag:
            lines.append(f"  - diagnostic: `{d}`")
    lines += in_progress(runs_dir, by_arm, bench)
    if notes:
        lines += ["", notes.strip()]
    md_path = results / f"{bench.name}.md"
    md_path.write_text("\n".join(lines) + "\n")
    plot_report({lb: by_arm[lb] for lb in main}, {lb: stats[lb] for lb in main}, teacher, results / f"{bench.name}.png")
    return md_path


def plot_report(by_arm: dict, stats: dict, teacher: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    arms = list(stats)
    if not arms:
        ax1.text(0.5, 0.5, "no finished runs yet", ha="center", transform=ax1.transAxes)
    x = np.arange(len(arms))
    for k, (key, label) in enumerate((("mAP50", "mAP50"), ("mAP50-95", "mAP50-95"))):
        means = [stats[a][key] for a in arms]
        stds = [0 if math.isnan(stats[a][f"{key}_std"]) else stats[a][f"{key}_std"] for a in arms]
        ax1.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=stds, capsize=3, label=label)
        if teacher:
            ax1.axhline(teacher[key], ls="--", lw=1, color=f"C{k}", label=f"teacher {label}")
    ax1.set_xticks(x, arms, rotation=20)
    ax1.set_xlim(-0.7, max(len(arms), 4) - 0.3)  # bars keep their width with few arms
    ax1.set_ylabel("val mAP (mean ± std over seeds)")
    ax1.set_ylim(0, 1)
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(fontsize=8, loc="lower right")
    ax1.set_title("final val mAP per arm")
    for i, arm in enumerate(arms):
        curves = [r["per_epoch_mAP50-95"] for r in by_arm[arm] if r["per_epoch_mAP50-95"]]
        if not curves:
            continue
        n = min(map(len, curves))
        arr = np.array([c[:n] for c in curves])
        mean = arr.mean(0)
        ax2.plot(np.arange(n), mean, color=f"C{i}", label=f"{arm} ({len(curves)})")
        if len(curves) > 1:
            ax2.fill_between(np.arange(n), arr.min(0), arr.max(0), color=f"C{i}", alpha=0.15)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("val mAP50-95 during training (EMA)")
    ax2.set_title("per-epoch mAP50-95 (mean over seeds, band = min..max)")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
