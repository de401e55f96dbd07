"""``make quality``: a larger embedded world and a learning curve (``egom2p quality``).

The demo's steps (:mod:`egom2p.demo`: render -> curate -> tokenizers -> tokenize) on a larger world,
then the same tiny EgoM2P recipe trained on nested subsets of the training sequences (1/4, 1/2, all
by default; same steps, same seed, same tokenizers) and evaluated on the same held-out clips. The
main metric of every task (camera ATE and RRE, gaze MSE, depth AbsRel, RGB PSNR and SSIM) against
the number of training clips goes to ``OUT/learning_curve.md`` / ``.json`` / ``.png``, beside the
best baseline and the tokenizer round trip of each metric, so more data -> better model is visible.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .demo import TASKS, CommandLine, DemoConfig, DataPaths, _run, build_data, evaluate_tasks, train_model
from .evaluation import EXPECTED_ROW, MODEL_ROW, held_out_loss

# (task, row key, label, lower is better)
MAIN_METRICS = (("camera", "ate", "camera ATE (m)", True), ("camera", "rre", "camera RRE (deg)", True),
                ("gaze", "mse", "gaze MSE", True), ("depth", "abs_rel", "depth AbsRel", True),
                ("rgb", "psnr", "RGB PSNR (dB)", False), ("rgb", "ssim", "RGB SSIM", False))
# the model's estimates a learning-curve cell shows, when its evals have them: (collect key, what it is)
ESTIMATES = (("model", "one decode with the paper's preset"), ("mean", "the mean of several samples (eval --samples)"),
             ("expected", "the decode of the expected code (eval --expected)"))


@dataclass
class QualityConfig(DemoConfig):
    out: Path = Path("quality_out")
    # Sized for <= 60 min on 2 CPU cores (about 45: the data steps ~14 min, each of the 3 trainings ~6, their
    # evaluations on 48 clips ~2): 96 sequences of 8 s = 384 clips (288 train, 96 val).
    sequences: int = 96
    seed: int = 1
    tokenizer_steps: int = 2000
    video_steps: int = 800
    train_steps: int = 2500
    eval_limit: int = 48
    fractions: tuple = field(default_factory=lambda: (0.25, 0.5, 1.0))


def subset_db(src: Path, dst: Path, fraction: float) -> int:
    """Write a token DB with the training clips of the first ``fraction`` of the training sequences of
    ``src`` (nested: a smaller fraction is a subset of a larger one); returns its number of rows."""
    import numpy as np
    import pyarrow as pa

    from .tokendb import open_token_db, write_tokens

    db = open_token_db(str(src))
    idx = db.index().to_pydict()
    train_seqs = sorted({s for s, sp in zip(idx["sequence"], idx["split"]) if sp == "train"})
    keep_seqs = set(train_seqs[: max(1, round(len(train_seqs) * fraction))])
    rows = [i for i, (s, sp) in enumerate(zip(idx["sequence"], idx["split"])) if sp == "train" and s in keep_seqs]
    if dst.exists():
        have = open_token_db(str(dst)).num_rows
        if have == len(rows):
            return have
        raise SystemExit(f"{dst}: holds {have} rows, expected {len(rows)}; delete it to rebuild")
    table = db.take(np.asarray(rows, dtype=np.int64))
    # lineage: the source token DB at its version, and which part of it
    n = table.num_rows
    for name, value, typ in (("src_clips", f"{db.path} ({fraction:g} of the training sequences)", pa.string()),
                             ("src_clips_version", int(db.version), pa.int64())):
        table = table.set_column(table.schema.get_field_index(name), name, pa.array([value] * n, typ))
    write_tokens(str(dst), table, registry=db.registry, tokenizers=db.tokenizers)
    return len(rows)


def token_ce(run_dir: Path, full_db: Path, train_db: Path) -> dict:
    """{"val": held-out, "train": own training clips}: masked-token CE, mean over modalities, with per modality."""
    out = {}
    for split, db in (("val", full_db), ("train", train_db)):
        per_mod = held_out_loss(run_dir, db, split=split)
        out[split], out[f"{split}_per_modality"] = float(sum(per_mod.values()) / len(per_mod)), per_mod
    print(f"[quality] {run_dir.name}: token CE held-out {out['val']:.3f}, train {out['train']:.3f}", flush=True)
    return out


def _kind(row: dict) -> str:
    """model | ceiling | baseline (eval JSONs carry it; older ones are told by the row's name)."""
    if "kind" in row:
        return row["kind"]
    return "model" if row["method"].startswith(MODEL_ROW) else "ceiling" if "round trip" in row["method"] else "baseline"


def collect(results: dict) -> dict:
    """{(task, key): {"model", "mean" (the mean-of-samples row, if any), "expected" (the expected-code row, if any),
    "baseline", "baseline_name", "ceiling"}} from one run's eval JSONs."""
    out = {}
    for task, key, _label, low in MAIN_METRICS:
        rows = results.get(task, {}).get("rows", [])
        model = next((r.get(key) for r in rows if r["method"] == MODEL_ROW), None)
        mean = next((r.get(key) for r in rows
                     if _kind(r) == "model" and r["method"] not in (MODEL_ROW, EXPECTED_ROW)), None)
        expected = next((r.get(key) for r in rows if r["method"] == EXPECTED_ROW), None)
        ceiling = next((r.get(key) for r in rows if _kind(r) == "ceiling"), None)
        base = [(r.get(key), r["method"]) for r in rows if _kind(r) == "baseline" and r.get(key) is not None]
        best = (min if low else max)(base, default=(None, None), key=lambda b: b[0])
        out[(task, key)] = {"model": model, "mean": mean, "expected": expected, "baseline": best[0],
                            "baseline_name": best[1], "ceiling": ceiling}
    return out


def write_curve(out: Path, points: list[dict]) -> tuple[Path, Path, Path]:
    """``learning_curve.{json,md,png}`` from [{"fraction", "train_clips", "metrics": collect(...)}]."""
    fmt = lambda v, label: "n/a" if v is None else (f"{v:.2f}" if "PSNR" in label or "RRE" in label else f"{v:.4f}")
    heads = ["training clips"] + [label + (" ↓" if low else " ↑") for _, _, label, low in MAIN_METRICS]
    heads += ["token CE held-out / train ↓", "inputs' worth (nats) " + " / ".join(TASKS) + " ↑"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(["---:"] * len(heads)) + "|"]
    shown = [(e, what) for e, what in ESTIMATES
             if e == "model" or any(v.get(e) is not None for p in points for v in p["metrics"].values())]
    for p in points:
        cells = [f"{p['train_clips']} ({p['fraction']:g})"]
        cells += [" / ".join(fmt(p["metrics"][(t, k)].get(e), label) for e, _ in shown) for t, k, label, _ in MAIN_METRICS]
        loss = p.get("token_ce") or {}
        cells.append(" / ".join("n/a" if loss.get(s) is None else f"{loss[s]:.3f}" for s in ("val", "train")))
        gain = p.get("inputs_gain") or {}
        cells.append(" / ".join("n/a" if gain.get(t) is None else f"{gain[t]:.3f}" for t in TASKS))
        lines.append("| " + " | ".join(cells) + " |")
    last = points[-1]["metrics"]
    lines.append("| best baseline | " + " | ".join(
        f"{fmt(last[(t, k)]['baseline'], label)} ({last[(t, k)]['baseline_name']})" for t, k, label, _ in MAIN_METRICS)
        + " | | |")
    lines.append("| tokenizer round trip | " + " | ".join(fmt(last[(t, k)]["ceiling"], label)
                                                        for t, k, label, _ in MAIN_METRICS) + " | | |")
    if len(shown) > 1:
        lines += ["", "EgoM2P cells: " + " / ".join(what for _, what in shown) + "."]
    lines += ["", "Token CE: the masked-token cross-entropy (nats, mean over modalities) of each run on the held-out "
              "clips of the full token DB and on its own training clips, under its training masking: the gap "
              "between the two is over-fitting.",
              "", "Inputs' worth: per task, the held-out target tokens' NLL without any input minus their NLL given the "
              "task's inputs (nats per token, from each eval table): about 0 for a model that predicts from its prior "
              "and ignores its inputs."]
    md = out / "learning_curve.md"
    md.write_text("## EgoM2P tiny: held-out main metrics vs training data\n\n" + "\n".join(lines) + "\n")
    js = out / "learning_curve.json"
    js.write_text(json.dumps([{**p, "metrics": {f"{t}.{k}": v for (t, k), v in p["metrics"].items()}}
                              for p in points], indent=2))
    png = out / "learning_curve.png"
    _plot(png, points)
    return md, js, png


def _plot(path: Path, points: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(17, 7))
    x = [p["train_clips"] for p in points]
    ax = axes.ravel()[-1]
    for split, style in (("val", "o-"), ("train", "s--")):
        y = [(p.get("token_ce") or {}).get(split) for p in points]
        if all(v is not None for v in y):
            ax.plot(x, y, style, label="held-out clips" if split == "val" else "training clips")
    if not ax.lines:  # runs without a token CE
        ax.axis("off")
    else:
        ax.set_xscale("log", base=2)
        ax.set(xlabel="training clips", title="masked-token cross-entropy (nats)")
        ax.legend(fontsize=7)
    ax = axes.ravel()[-2]
    gains = {t: [(p.get("inputs_gain") or {}).get(t) for p in points] for t in TASKS}
    gains = {t: y for t, y in gains.items() if all(v is not None for v in y)}
    if not gains:  # eval tables from before the inputs' worth
        ax.axis("off")
    else:
        for t, y in gains.items():
            ax.plot(x, y, "o-", label=t)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="training clips", title="what the inputs are worth (nats / target token)")
        ax.legend(fontsize=7)
    for ax, (t, k, label, low) in zip(axes.ravel(), MAIN_METRICS):
        for e, what in ESTIMATES:
            y = [p["metrics"][(t, k)].get(e) for p in points]
            if all(v is not None for v in y):
                ax.plot(x, y, "o-", label=f"{MODEL_ROW}, {what.split(' (')[0]}")
        last = points[-1]["metrics"][(t, k)]
        if last["baseline"] is not None:
            ax.axhline(last["baseline"], color="tab:red", ls="--", label=f"best baseline ({last['baseline_name']})")
        if last["ceiling"] is not None:
            ax.axhline(last["ceiling"], color="tab:green", ls=":", label="tokenizer round trip")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="training clips", title=label + (" (lower is better)" if low else " (higher is better)"))
        if ax.lines:  # a metric with no eval table behind it is an empty panel
            ax.legend(fontsize=7)
    fig.suptitle("EgoM2P tiny on held-out clips: more training data")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_quality(cfg: QualityConfig, egom2p: CommandLine) -> Path:
    """The learning curve; ``egom2p``: the command line's entry (``egom2p.cli.main``)."""
    out = Path(cfg.out)
    t0 = time.perf_counter()
    data: DataPaths = build_data(cfg, out, egom2p)
    points = []
    for frac in sorted(cfg.fractions):
        tag = f"frac{frac:g}"
        db = data.db if frac >= 1 else out / "tokens" / f"{tag}.lance"
        if frac < 1:
            n = subset_db(data.db, db, frac)
        else:
            from .tokendb import open_token_db

            idx = open_token_db(str(data.db)).index().to_pydict()
            n = sum(1 for s in idx["split"] if s == "train")
        print(f"\n[quality] {tag}: {n} training clips -> {db}", flush=True)
        run_dir = out / "runs" / tag
        train_model(db, run_dir, cfg.train_steps, cfg.seed)
        results = evaluate_tasks(run_dir, data, out / "eval" / tag, cfg.eval_limit, egom2p, cfg.samples,
                                   cfg.expected)
        points.append({"fraction": frac, "train_clips": n, "run": str(run_dir), "metrics": collect(results),
                       "token_ce": token_ce(run_dir, data.db, db),
                       "inputs_gain": {t: r.get("information", {}).get("gain") for t, r in results.items()}})
    md, js, png = write_curve(out, points)
    print("\n" + md.read_text())
    print(f"[quality] finished in {(time.perf_counter() - t0) / 60:.1f} min; wrote {md}, {js}, {png}")
    return md


__all__ = ["MAIN_METRICS", "QualityConfig", "collect", "run_quality", "subset_db", "write_curve", "TASKS", "_run"]
