"""The probe result as a console table and a heatmap (layers x nodes of accuracy / ceiling)."""

from __future__ import annotations

import os


def grid(result: dict, key: str) -> list[list[float]]:
    """result[...][key] as rows of layers, columns of nodes."""
    cell = {(r["layer"], r["node"]): r[key] for r in result["results"]}
    return [[cell[(layer, node)] for node in result["nodes"]] for layer in result["layers"]]


def table(result: dict) -> str:
    """Accuracy / ceiling per (layer, node), then each node's ceiling and chance."""
    nodes, layers = result["nodes"], result["layers"]
    width = max(len(name) for name in [*layers, "ceiling (acc)", "chance (acc)"])
    head = " " * width + "".join(f"{n:>9}" for n in nodes)
    when = "a fresh init" if result["step"] == "init" else f"step {result['step']}"
    lines = [f"probe accuracy / Bayes ceiling at {when}:", head]
    for layer, row in zip(layers, grid(result, "of_ceiling")):
        lines.append(f"{layer:<{width}}" + "".join(f"{v:9.3f}" for v in row))
    for label, key in (("ceiling (acc)", "ceiling"), ("chance (acc)", "chance")):
        lines.append(f"{label:<{width}}" + "".join(f"{result[key][n]:9.3f}" for n in nodes))
    return "\n".join(lines)


def heatmap(result: dict, path: str) -> None:
    """PNG of accuracy / ceiling, layers down, nodes across, each cell labelled; the colour scale
    runs from the lowest chance / ceiling (or lowest cell) to 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = grid(result, "of_ceiling")
    nodes, layers = result["nodes"], result["layers"]
    chance = [result["chance"][n] / result["ceiling"][n] for n in nodes]
    low = max(0.0, min(min(map(min, values)), *chance))  # the colour scale starts at chance
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(nodes), 1.0 + 0.45 * len(layers)))
    image = ax.imshow(values, vmin=low, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(nodes)), nodes)
    ax.set_yticks(range(len(layers)), layers)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(
                j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < (low + 1) / 2 else "k"
            )
    fig.colorbar(image, ax=ax, label="probe accuracy / Bayes ceiling")
    when = "fresh init" if result["step"] == "init" else f"step {result['step']}"
    ax.set_title(f"{os.path.basename(os.path.normpath(result['workdir']))}, {when}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
