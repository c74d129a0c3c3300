"""Turn ``evaluate``'s results into a Markdown report, a JSON of every number, and plots.

Everything the report shows comes from the JSON written beside it, so a reader can check
any cell; "n/a" always means the method cannot answer that case (declared capability),
never that it scored zero.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers or in tests
import matplotlib.pyplot as plt  # noqa: E402

SEGMENT_LABELS = {
    "all": "all",
    "new_to_user": "new to user",
    "warm_items": "warm items",
    "cold_items": "cold items",
    "cold_users": "cold users",
}
NA = "n/a"


def _fmt(value: Any) -> str:
    if value is None:
        return NA
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _segment_value(segment: Mapping[str, Any] | None, key: str) -> float | None:
    """None for an incapable method; None also when the segment had no users (shown as —)."""
    if segment is None:
        return None
    return segment.get(key)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _cell(segment: Mapping[str, Any] | None, key: str) -> str:
    if segment is None:
        return NA
    if not segment.get("users"):
        return "— (no users)"
    return _fmt(segment.get(key))


def plot_metric_vs_k(results: Mapping[str, Any], path: Path, metric_names: Sequence[str] = ("recall", "ndcg")) -> None:
    """One panel per metric, one line per method, over the evaluated k (segment ``all``)."""
    ks = results["ks"]
    fig, axes = plt.subplots(1, len(metric_names), figsize=(5 * len(metric_names), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metric_names):
        for name, res in results["methods"].items():
            seg = res["next_purchase"]["all"]
            ax.plot(ks, [seg[f"{metric}@{k}"] for k in ks], marker="o", label=name)
        ax.set_xlabel("K")
        ax.set_ylabel(f"{metric}@K (all test users)")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_warm_cold(results: Mapping[str, Any], path: Path, metric: str) -> None:
    """Grouped bars of one metric per segment; an incapable method gets an "n/a" label
    where its bar would be, so absence reads as inability, not as zero."""
    names = list(results["methods"])
    segments = list(SEGMENT_LABELS)
    width = 0.8 / max(len(segments), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(names) + 2), 4.0))
    for s_idx, segment in enumerate(segments):
        xs, heights = [], []
        for m_idx, name in enumerate(names):
            seg = results["methods"][name]["next_purchase"][segment]
            x = m_idx + (s_idx - (len(segments) - 1) / 2) * width
            value = _segment_value(seg, metric)
            if value is None:
                ax.text(x, 0, NA, rotation=90, ha="center", va="bottom", fontsize=7, color="grey")
                continue
            xs.append(x)
            heights.append(value)
        ax.bar(xs, heights, width=width, label=SEGMENT_LABELS[segment])
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return NA
    return f"{value / base:.2f}×"


def _protocols_section(results: Mapping[str, Any], k0: int) -> list[str]:
    """One table per protocol: every method's NDCG/recall@k beside popularity and the strongest
    other method of the same run."""
    protocols = results.get("protocols") or {}
    if not protocols:
        return []
    lines = ["## Every protocol, side by side", ""]
    serving = results.get("serving") or {}
    if serving:
        lines += [f"- Serving space: **{serving.get('space')}** ({serving.get('space_reason')}).", ""]
    key = f"ndcg@{k0}"
    for spec, block in protocols.items():
        methods = {n: r for n, r in block["methods"].items() if r is not None}
        if not methods:
            continue
        lines += [f"### {spec}", ""]
        if block.get("data"):
            lines += ["- " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in block["data"].items()) + ".", ""]

        def value(name: str, metric: str = key, segment: str = "all") -> float | None:
            seg = methods[name]["next_purchase"].get(segment)
            return None if not seg else seg.get(metric)

        pop = next((n for n in ("popularity", "random") if n in methods), None)
        rows = []
        for name in methods:
            others = [value(n) for n in methods if n != name and value(n) is not None]
            best_other = max(others) if others else None
            rows.append([name, _fmt(value(name)), _fmt(value(name, f"recall@{k0}")),
                         _fmt(value(name, key, "new_to_user")), _fmt(value(name, key, "cold_users")),
                         _ratio(value(name), value(pop) if pop else None), _ratio(value(name), best_other)])
        lines += _table(["method", key, f"recall@{k0}", f"{key} new to user", f"{key} cold users",
                         f"× {pop or 'baseline'}", "× best other"], rows) + [""]
        ranker = block.get("ranker")
        if ranker:
            lines.append(f"- shoprec's ranker: {'learned (serves)' if ranker.get('serves') else 'blend'} — "
                         f"{ranker.get('reason')}.")
            top = list((ranker.get("importances") or {}).items())[:10]
            if top:
                lines.append("- Feature importances (gain share): " + ", ".join(f"{f} {v:.3f}" for f, v in top) + ".")
            lines.append("")
    return lines


def render_markdown(results: Mapping[str, Any], title: str, notes: Sequence[str], images: Mapping[str, str]) -> str:
    ks = results["ks"]
    k0 = ks[0]
    data = results["data"]
    methods = results["methods"]
    lines = [f"# {title}", ""]
    lines += [f"- {note}" for note in notes]
    lines += [
        "- Data: " + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in data.items()) + ".",
        f"- `{NA}`: the method cannot score that case (declared capability), not a zero.",
        "",
    ]
    lines += _protocols_section(results, k0)
    lines += [f"## Next purchase @ {k0} ({results['run']['protocols'][0] if 'run' in results else 'first protocol'})",
              ""]
    header = ["method"] + [f"{m}@{k0} {SEGMENT_LABELS[s]}" for m in ("recall", "ndcg") for s in SEGMENT_LABELS]
    rows = [
        [name] + [_cell(res["next_purchase"].get(s), f"{m}@{k0}") for m in ("recall", "ndcg") for s in SEGMENT_LABELS]
        for name, res in methods.items()
    ]
    lines += _table(header, rows)
    users_row = ["users"] + [
        str(next((r["next_purchase"][s]["users"] for r in methods.values() if r["next_purchase"].get(s)), "—"))
        for _ in ("recall", "ndcg") for s in SEGMENT_LABELS
    ]
    lines += ["| " + " | ".join(users_row) + " |", ""]

    lines += ["## All test users, by K", ""]
    k_max = max(ks)
    header = ["method"] + [f"{m}@{k}" for k in ks for m in ("recall", "ndcg", "hit")] + [f"mrr@{k_max}"]
    rows = [
        [name] + [_fmt(res["next_purchase"]["all"][f"{m}@{k}"]) for k in ks for m in ("recall", "ndcg", "hit")]
        + [_fmt(res["next_purchase"]["all"][f"mrr@{k_max}"])]
        for name, res in methods.items()
    ]
    lines += _table(header, rows) + [""]

    lines += ["## Catalogue coverage and novelty", ""]
    header = ["method"] + [f"coverage@{k}" for k in ks] + [f"novelty@{k}" for k in ks]
    rows = [[name] + [_fmt(res["catalogue"].get(key)) for key in header[1:]] for name, res in methods.items()]
    lines += _table(header, rows) + [""]

    lines += ["## Bought together (hit rate of b in top-K of a, per held-out pair)", ""]
    header = ["method"] + [f"hit@{k} {seg}" for seg in ("all", "warm", "cold") for k in ks]
    rows = []
    for name, res in methods.items():
        together = res.get("bought_together")
        if together is None:
            rows.append([name] + [NA] * (len(header) - 1))
            continue
        rows.append([name] + [
            NA if together[seg] is None else _fmt(together[seg][f"hit@{k}"])
            for seg in ("all", "warm", "cold") for k in ks
        ])
    lines += _table(header, rows) + [""]

    similar = results.get("similar_items")
    if similar:
        lines += [f"## Similar items (top-{similar['k']}, {similar['queries']} random query items)", ""]
        order = ("text", "image", "image (no colour)", "image (CNN vector)", "joint", "joint (no colour)", "colour")
        rows = [[m + (f" (colour weight {similar[m]['colour_weight']:g})" if similar[m].get("colour_weight") else ""),
                 _fmt(similar[m]["same_category_at_k"]), _fmt(similar[m].get("same_colour_at_k")),
                 _fmt(similar[m]["variant_recall_at_k"]), str(similar[m]["queries_with_variants"])]
                for m in order if m in similar]
        rows.append(["chance", _fmt(similar["same_category_chance"]), _fmt(similar.get("same_colour_chance")), "", ""])
        lines += _table(["vector", "same category", "same colour", "same-product variants recall",
                         "queries with variants"], rows)
        lines.append("")
    photo = results.get("photo_search")
    if photo:
        lines += [f"- Search by photo ({photo['queries']} products' own photos, cropped, resized and re-encoded): "
                  f"the product in the top {photo['k']} for {_fmt(photo['product_found_at_k'])} of them; "
                  f"{_fmt(photo['same_colour_at_k'])} of the top {photo['k']} share its colour.", ""]

    lines += ["## Run time (seconds)", ""]
    rows = [[name, _fmt(res["seconds"].get("fit")), _fmt(res["seconds"].get("evaluate"))]
            for name, res in methods.items()]
    lines += _table(["method", "fit", "evaluate"], rows) + [""]

    if results.get("unavailable"):
        lines += ["## Unavailable methods", ""]
        lines += [f"- **{name}**: {reason}" for name, reason in results["unavailable"].items()]
        lines.append("")

    lines += ["## Plots", ""]
    lines += [f"![{caption}]({file})" for caption, file in images.items()]
    lines.append("")
    return "\n".join(lines)


def write_report(results: Mapping[str, Any], out_dir: Path, title: str = "shoprec evaluation",
                 notes: Sequence[str] = ()) -> Path:
    """Write ``report.md``, ``results.json`` and the PNG plots into ``out_dir``; returns the
    report path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    k0 = results["ks"][0]
    images: dict[str, str] = {}
    if results["methods"]:
        plot_metric_vs_k(results, out / "metric_vs_k.png")
        images["Recall and NDCG vs K"] = "metric_vs_k.png"
        plot_warm_cold(results, out / "warm_cold.png", f"recall@{k0}")
        images[f"Recall@{k0}: warm vs cold"] = "warm_cold.png"
    report = out / "report.md"
    report.write_text(render_markdown(results, title, notes, images), encoding="utf-8")
    return report
