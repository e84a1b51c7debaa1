"""Figures for the notebooks; every figure is also saved as a PNG under results/.

Each function draws one figure, saves it to ``fig_dir/NAME.png`` (atomically)
when ``fig_dir`` is given, and returns the matplotlib Figure.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

if matplotlib.get_backend().lower() not in ("module://matplotlib_inline.backend_inline", "inline"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from ..data.base import CLASSES  # noqa: E402
from ..io import atomic_path  # noqa: E402


def save(fig, fig_dir, name: str):
    """Save ``fig`` as ``fig_dir/name.png`` (temp file + rename); returns the path."""
    if fig_dir is None:
        return None
    path = Path(fig_dir) / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return path


def class_counts(corpus, fig_dir=None):
    rows = []
    for split, cs in corpus.splits().items():
        for name, n in cs.class_counts(getattr(corpus, "classes", None)).items():
            rows.append((split, name, n))
    fig, ax = plt.subplots(figsize=(10, 3.5))
    splits = list(corpus.splits())
    width = 0.8 / len(splits)
    names = list(getattr(corpus, "classes", CLASSES))
    x = np.arange(len(names))
    for i, split in enumerate(splits):
        ax.bar(x + i * width, [n for s, _, n in rows if s == split], width, label=split)
    ax.set_xticks(x + 0.4 - width / 2, names, rotation=45)
    ax.set_ylabel("clips")
    ax.legend()
    ax.set_title(f"Class counts ({corpus.source})")
    save(fig, fig_dir, "class_counts")
    return fig


def spectrograms(feats, titles, fig_dir=None, name="spectrograms"):
    n = len(feats)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.8), squeeze=False)
    for ax, f, t in zip(axes[0], feats, titles):
        ax.imshow(np.asarray(f).T, origin="lower", aspect="auto", cmap="magma")
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("frame")
    axes[0][0].set_ylabel("mel bin")
    save(fig, fig_dir, name)
    return fig


def training_curve(history, fig_dir=None, name="training_curve"):
    ep = [e["epoch"] for e in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
    a1.plot(ep, [e["train_loss"] for e in history], label="train")
    a1.plot(ep, [e["val_loss"] for e in history], label="val")
    a1.set_xlabel("epoch"), a1.set_ylabel("loss"), a1.legend()
    a2.plot(ep, [e["train_acc"] for e in history], label="train (augmented)")
    a2.plot(ep, [e["val_acc"] for e in history], label="val")
    a2.set_xlabel("epoch"), a2.set_ylabel("accuracy"), a2.legend()
    save(fig, fig_dir, name)
    return fig


def confusion(cm, fig_dir=None, name="confusion", title="Confusion matrix (test)", class_names=None):
    cm = np.asarray(cm, dtype=float)
    names = list(CLASSES) if class_names is None else list(class_names)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    sns.heatmap(norm, annot=cm.astype(int), fmt="d", cmap="Blues", xticklabels=names, yticklabels=names,
                cbar=False, ax=ax, annot_kws={"fontsize": 7})
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title)
    save(fig, fig_dir, name)
    return fig


def det_curves(curves: dict, op_fdph=None, fig_dir=None, name="det", kind="stream", title=None, hours=None,
               min_events=None):
    """DET curves: FRR vs false detections per hour (kind='stream') or vs per-clip FDR ('clip').

    ``curves``: label -> curve dict from kwslib.evaluation.metrics. ``hours`` and ``min_events`` (stream only,
    both or neither): the rates below ``min_events / hours`` rest on fewer than ``min_events`` false
    detections of the negative audio, and are shaded and labelled so.
    """
    if (hours is None) != (min_events is None):
        raise ValueError("det_curves: give both hours and min_events (to shade the unsupported rates) or neither")
    if hours is not None:
        if kind != "stream":
            raise ValueError("det_curves: hours/min_events only apply to kind='stream'")
        if not (isinstance(hours, (int, float)) and np.isfinite(hours) and hours > 0):
            raise ValueError(f"det_curves: hours must be a number > 0, got {hours!r}")
        if not (isinstance(min_events, (int, np.integer)) and min_events >= 1):
            raise ValueError(f"det_curves: min_events must be an integer >= 1, got {min_events!r}")
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for label, c in curves.items():
        x = np.asarray(c["fdph"] if kind == "stream" else c["fdr"])
        y = np.asarray(c["frr"])
        ax.plot(x, y, label=label, drawstyle="steps-post")
    if kind == "stream":
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("false detections per hour")
        if op_fdph is not None:
            ax.axvline(op_fdph, color="k", ls=":", lw=1, label=f"operating point ({op_fdph:g}/h)")
        if hours is not None:
            ax.axvspan(0, min_events / hours, color="0.5", alpha=0.15, lw=0,
                       label=f"< {min_events} false detections in {hours:.2f} h (below {min_events / hours:.3g}/h)")
    else:
        ax.set_xscale("log")
        ax.set_xlabel("false detection rate per clip")
    ax.set_ylabel("false rejection rate")
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or ("DET curve (stream)" if kind == "stream" else "DET curve (per clip)"))
    save(fig, fig_dir, name)
    return fig


def weight_histograms(w, panels: dict, fig_dir=None, name="weight_histograms", title=None):
    """Stage 1's transform of one layer's weights: float weights, then one panel per entry of ``panels``.

    ``w``: float weights (any shape). ``panels``: label -> (values, kind) where kind is
    "dense" (a continuous histogram, e.g. tanh(w)/max|tanh(w)|) or "codes" (integer codes: one bar per code).
    """
    w = np.asarray(w, dtype=float).ravel()
    n = 1 + len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.0), squeeze=False)
    axes = axes[0]
    axes[0].hist(w, bins=120, color="0.35")
    axes[0].set_title("float weights w", fontsize=9)
    axes[0].set_yscale("log")
    for ax, (label, (values, kind)) in zip(axes[1:], panels.items()):
        v = np.asarray(values, dtype=float).ravel()
        if kind == "codes":
            codes, counts = np.unique(np.round(v).astype(int), return_counts=True)
            ax.bar(codes, counts / len(v), width=0.8 if len(codes) < 40 else 1.0)
            ax.set_ylabel("share of weights")
            if len(codes) <= 16:
                ax.set_xticks(codes)
                ax.tick_params(axis="x", labelsize=7 if len(codes) > 8 else 9)
        else:
            ax.hist(v, bins=120, range=(-1, 1))
            ax.set_yscale("log")
        ax.set_title(label, fontsize=9)
    fig.suptitle(title or "", fontsize=10)
    fig.tight_layout()
    save(fig, fig_dir, name)
    return fig


def metric_vs_bits(rows, metric: str, reference=None, fig_dir=None, name=None, ylabel=None, title=None,
                   band=None):
    """One line per method: ``metric`` against weight width (x axis descending: 8 bits on the left).

    ``rows``: dicts with "label", "weight_bits" and ``metric``. ``reference``: the float
    model's value (a horizontal line); ``band``: (lo, hi) shaded, e.g. the float model's CI.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    for label in labels:
        pts = sorted((r["weight_bits"], r[metric]) for r in rows if r["label"] == label and r.get(metric) is not None)
        if pts:
            ax.plot([b for b, _ in pts], [v for _, v in pts], marker="o", ls="--" if "per tensor" in label else "-",
                    label=label)
    if reference is not None:
        ax.axhline(reference, color="k", lw=1, label="float")
    if band is not None:
        ax.axhspan(band[0], band[1], color="k", alpha=0.1, label="float 95% CI")
    bits = sorted({r["weight_bits"] for r in rows})
    ax.set_xticks(bits)
    ax.invert_xaxis()
    ax.set_xlabel("weight bits")
    ax.set_ylabel(ylabel or metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title or f"{metric} vs weight width")
    save(fig, fig_dir, name or f"{metric}_vs_bits")
    return fig


def memory_vs_bits(rows, fig_dir=None, name="memory_vs_bits"):
    """Stacked bars of weight / parameter / activation bytes per layout (rows from kwslib.study.memory.projection_table)."""
    labels = [r["layout"] if r["layout"] in ("float32", "int8") else f"{r['layout']}-bit packed" for r in rows]
    labels = ["8-bit containers" if l == "int8" else l for l in labels]
    w = np.array([r["weights"] for r in rows]) / 1024
    p = np.array([r["params"] for r in rows]) / 1024
    a = np.array([r["activations"] for r in rows]) / 1024
    fig, ax = plt.subplots(figsize=(9, 3.8))
    x = np.arange(len(rows))
    ax.bar(x, w, label="weights")
    ax.bar(x, p, bottom=w, label="gain/bias/scale parameters")
    ax.bar(x, a, bottom=w + p, label="activation buffers")
    for xi, r in zip(x, rows):
        ax.text(xi, (r["total"]) / 1024, f"{r['reduction_vs_float32']:.1f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("KiB")
    ax.set_title("Model memory by layout (labels: reduction vs float32)")
    ax.legend(fontsize=8)
    save(fig, fig_dir, name)
    return fig


def memory_vs_size(points, fig_dir=None, name="memory_vs_model_size"):
    """Total bytes against parameter count for several layouts. points: list of (params, {layout: bytes})."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    layouts = list(points[0][1]) if points else []
    order = np.argsort([pp for pp, _ in points])
    for lay in layouts:
        ax.plot([points[i][0] for i in order], [points[i][1][lay] / 1024 for i in order], marker="o", ms=3,
                label=lay)
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("parameters"), ax.set_ylabel("KiB (weights + parameters + activations)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("Memory vs model size")
    save(fig, fig_dir, name)
    return fig
