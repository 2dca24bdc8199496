"""evaluation.html and its PNGs: tables a person reads, plots a person looks at. The page frame, tables and
slice plot are shared with the run report (`marn_tf/workflow/results_report.py`)."""
from __future__ import annotations

import html
import io
from typing import Optional

import numpy as np

from marn_tf.storage import files

CHANCE_TOLERANCE = 0.07  # a discriminator accuracy within this of chance counts as chance


def discriminator_reading(d1: float, ds: Optional[float], chance: float) -> str:
    """What the measured D1 and Ds accuracies say about the invariant and specific vectors, against chance: always
    naming the most common present modality (1/M when all are present equally often)."""
    head = f"D1 accuracy {d1:.2f} vs chance {chance:.2f}"
    if d1 < chance - CHANCE_TOLERANCE:
        d1_text = f"{head}, far below chance: the encoder is fooling D1 by swapping modalities, not hiding them"
    elif d1 > chance + CHANCE_TOLERANCE:
        d1_text = f"{head}, above chance: the invariant vectors still carry their modality"
    else:
        d1_text = f"{head}, near chance: the invariant vectors hide their modality"
    if ds is None:
        return d1_text + "."
    if ds > chance + CHANCE_TOLERANCE:
        return f"{d1_text}; Ds accuracy {ds:.2f}, above chance: the specific vectors keep their modality."
    return f"{d1_text}; Ds accuracy {ds:.2f}, not above chance: the specific vectors lost their modality."


def format_cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if np.isnan(value) else f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else html.escape(str(value))


def html_table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{format_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:75em} table{border-collapse:collapse;margin:1em 0} "
          "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} th{background:#f3f3f3} img{max-width:100%}")


def html_page(title: str, body: str) -> str:
    """A whole HTML page: `title` (plain text, escaped here) as its title and first heading, then `body` (HTML)."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
            f"<style>{_STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def save_figure(fig, path: str) -> None:
    """Writes `fig` as a PNG to `path` (local or any file system) and closes it."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    pyplot().close(fig)
    files.write_bytes(path, buffer.getvalue())


def pyplot():
    """matplotlib.pyplot on the Agg backend (PNG files, no display), imported when a plot is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_modality_weights(result: dict, path: str) -> None:
    plt = pyplot()

    modalities = result["modalities"]
    categories = sorted(result["modality_weights_by_category"])
    values = np.array([[result["modality_weights_by_category"][c]["modality_weights"][m] or 0.0 for m in modalities]
                       for c in categories])
    fig, ax = plt.subplots(figsize=(1.2 * len(modalities) + 3, 0.28 * len(categories) + 1.5))
    image = ax.imshow(values, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(modalities)), modalities)
    ax.set_yticks(range(len(categories)), categories, fontsize=7)
    ax.set_title(f"Mean modality weight |a^m| per category ({result['variant']}, {result['split']})")
    fig.colorbar(image, ax=ax)
    save_figure(fig, path)


def plot_modality_importance(importance: dict, title: str, path: str) -> None:
    """The AUC drop with each modality hidden (`modality_importance` of an evaluation): one bar group per modality,
    a bar for all examples and one per category kind when measured."""
    plt = pyplot()
    modalities = importance["modalities"]
    groups = {"all": importance["overall"]} | {k: v["drop"] for k, v in (importance["by_kind"] or {}).items()}
    fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(modalities) + 2), 3.4))
    width = 0.8 / len(groups)
    for i, (name, drops) in enumerate(groups.items()):
        values = [np.nan if drops.get(m) is None else drops[m] for m in modalities]
        ax.bar(np.arange(len(modalities)) + i * width - 0.4 + width / 2, values, width, label=name)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xticks(np.arange(len(modalities)), modalities)
    ax.set_ylabel("AUC(all) - AUC(hidden)")
    ax.set_title(title)
    if len(groups) > 1:
        ax.legend(fontsize=8)
    save_figure(fig, path)


def importance_section(importance: Optional[dict]) -> str:
    """The report's section on modality importance by use: tables per kind and per category, and the plot."""
    if not importance or not importance["modalities"]:
        return ""
    modalities = importance["modalities"]
    headers = ["examples"] + [f"drop {m}" for m in modalities]
    rows = [["all", sum(v["examples"] for v in importance["by_category"].values())] + [importance["overall"][m] for m in modalities]]
    kinds = ""
    if importance["by_kind"] is not None:
        kinds = html_table(["kind", "categories"] + headers,
                           [[k, len(v["categories"]), v["examples"]] + [v["drop"][m] for m in modalities]
                            for k, v in sorted(importance["by_kind"].items())])
    rows += [[c, v["examples"]] + [v["drop"][m] for m in modalities]
             for c, v in sorted(importance["by_category"].items())]
    return f"""
<section id="modality-importance"><h2>Modality importance by use</h2>
<p>AUC(all) &minus; AUC with the modality hidden from every item (candidate and behaviour items), per candidate
category; recomputed on each category kind's examples where the data's world.json gives kinds. The ID modality is
always present and is not hidden.</p>
<img src="modality_importance.png" alt="AUC drop with each modality hidden">
{kinds}{html_table(["category"] + headers, rows)}
</section>"""


def plot_slices(slices_by_model: dict[str, dict], path: str) -> None:
    """AUC of every slice with examples, one bar per model (`{model: {slice: metrics}}`)."""
    plt = pyplot()
    first = next(iter(slices_by_model.values()))
    names = [n for n, s in first.items() if s.get("examples")]
    aucs = {model: [slices.get(n, {}).get("auc", np.nan) for n in names] for model, slices in slices_by_model.items()}
    finite = [a for values in aucs.values() for a in values if a is not None and not np.isnan(a)]
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(names) + 2), 3.6))
    width = 0.8 / len(aucs)
    for i, (model, values) in enumerate(aucs.items()):
        ax.bar(np.arange(len(names)) + i * width - 0.4 + width / 2, [np.nan if a is None else a for a in values],
               width, label=model)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(np.arange(len(names)), names)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    ax.set_ylim(min([0.45, *finite]), 1.0)
    ax.set_ylabel("AUC")
    ax.set_title("AUC by slice")
    if len(aucs) > 1:
        ax.legend(fontsize=8, ncol=3)
    save_figure(fig, path)


def write_report(result: dict, output_dir: str) -> str:
    plot_modality_weights(result, files.join(output_dir, "modality_weights_by_category.png"))
    plot_slices({result["variant"]: result["slices"]}, files.join(output_dir, "slices.png"))
    importance = result.get("modality_importance")
    if importance and importance["modalities"]:
        plot_modality_importance(importance, f"AUC drop with a modality hidden ({result['variant']}, "
                                             f"{result['split']})", files.join(output_dir, "modality_importance.png"))
    modalities = result["modalities"]
    floor = result["floor"] or {}
    summary = html_table(["", "examples", "AUC", "GAUC", "GAUC users", "log loss", "D1 accuracy", "Ds accuracy",
                          "chance (most common modality)"],
                     [[result["variant"], result["examples"], result["auc"], result["gauc"], result["gauc_users"],
                       result["logloss"], result["d1_accuracy"], result["ds_accuracy"], result["chance_accuracy"]],
                      ["no-model floor", floor.get("examples"), floor.get("auc"), floor.get("gauc"), None,
                       floor.get("logloss"), None, None, None]])
    if result["d1_accuracy"] is None:
        reading = "This variant has no discriminators."
    else:
        reading = html.escape(discriminator_reading(result["d1_accuracy"], result["ds_accuracy"],
                                                    result["chance_accuracy"]))
    floor_note = ("The no-model floor scores each impression by the logit sum of its click rates (no training)."
                  if result["floor"] else "No no-model floor: the data has no click-rate features.")
    slices = html_table(["slice", "examples", "positive rate", "AUC", "GAUC", "log loss"],
                    [[n, s.get("examples"), s.get("positive_rate"), s.get("auc"), s.get("gauc"), s.get("logloss")]
                     for n, s in result["slices"].items()])
    by_category = html_table(["category", "examples"] + [f"weight {m}" for m in modalities] + [f"w {m}" for m in modalities],
                         [[c, v["examples"]] + [v["modality_weights"][m] for m in modalities]
                          + [v["importance"][m] for m in modalities]
                          for c, v in sorted(result["modality_weights_by_category"].items())])
    page = html_page(f"MARN evaluation: {result['variant']} on the {result['split']} split", f"""
<p>Checkpoint: <code>{html.escape(result['checkpoint'])}</code></p>
<section id="metrics"><h2>Metrics</h2>{summary}
<p>{floor_note}</p><p>{reading}</p></section>
<section id="slices"><h2>Slices</h2>{slices}<img src="slices.png" alt="AUC by slice"></section>
<section id="modality-weights"><h2>Modality weights by category</h2>
<p>Mean |a<sup>m</sup>| of the multimodal attention over candidates that have the modality; w is D0's importance weight.</p>
<img src="modality_weights_by_category.png" alt="modality weights by category">{by_category}</section>
{importance_section(importance)}""")
    path = files.join(output_dir, "evaluation.html")
    files.write_text(path, page)
    return path
