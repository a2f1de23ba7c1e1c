"""Drawing the workflow DAG (``logos run WORKFLOW --draw FILE``): Graphviz through Hamilton when ``dot`` is
installed, else a layered matplotlib drawing, and one line on stderr saying which.

The fallback is a small Sugiyama-style layout (why not networkx's: its layouts place nodes as points, and
the demo DAG's ~60 labels overlapped). Layers are the longest path from an input (left to right, as
Graphviz's ``rankdir=LR``); within a layer nodes are ordered by the mean position of their predecessors
(barycenter, two sweeps) and stacked with a gap, each box as wide as its label measured in points, so no
two label boxes can overlap; edges go behind opaque boxes.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

FONT_SIZE = 8.0  # points
PAD, ROW_GAP, COLUMN_GAP = 4.0, 6.0, 36.0  # points around a label, between rows, between layers


@dataclass(frozen=True)
class Box:
    """A label box in points, origin bottom-left."""

    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


@dataclass
class Drawing:
    path: Path
    engine: str  # "graphviz" | "matplotlib"
    boxes: dict[str, Box] = field(default_factory=dict)  # the fallback's layout, in points
    labels: dict[str, Box] = field(default_factory=dict)  # where its renderer put each label, in points


def draw_workflow(workflow: str, overrides: list[str] | None, out: str) -> Drawing:
    from workflows.config import load_workflow
    from workflows.runner import build_driver, make_workspace, stages_for

    loaded = load_workflow(workflow, overrides)
    dr = build_driver(make_workspace(loaded, workflow, None, dry_run=True), cache=False)
    stages = stages_for(dr, loaded.config.targets)
    path = Path(out)
    if shutil.which("dot"):
        # No input values exist before a run; the picture needs none (Hamilton would refuse them missing).
        dr.visualize_execution(stages, str(path.with_suffix("")), render_kwargs={"format": path.suffix[1:] or "png"},
                               inputs={}, bypass_validation=True)
        return Drawing(path, "graphviz")
    print("logos run --draw: Graphviz's `dot` is not on PATH; drawing with matplotlib instead "
          "(install graphviz for Hamilton's full picture)", file=sys.stderr)
    upstream = {v.name for v in dr.what_is_upstream_of(*loaded.config.targets)} | set(loaded.config.targets)
    edges = [(dependency, variable.name) for variable in dr.list_available_variables() if variable.name in upstream
             for dependency in variable.required_dependencies | variable.optional_dependencies
             if dependency != "workspace"]  # the run context every stage gets: an edge to each says nothing
    boxes = layered_layout(edges)
    return Drawing(path, "matplotlib", boxes, draw_boxes(boxes, edges, path))


def _label_width(label: str) -> float:
    from matplotlib.textpath import TextPath

    return TextPath((0, 0), label, size=FONT_SIZE).get_extents().width


def layered_layout(edges: list[tuple[str, str]]) -> dict[str, Box]:
    """A box per node: layer = longest path from a source, order within a layer by barycenter."""
    import networkx as nx

    graph = nx.DiGraph(edges)
    layer = {}
    for node in nx.topological_sort(graph):
        layer[node] = max((layer[p] + 1 for p in graph.predecessors(node)), default=0)
    for node in graph:  # an input sits just before its first consumer, not at the far left
        if graph.in_degree(node) == 0 and graph.out_degree(node):
            layer[node] = min(layer[s] for s in graph.successors(node)) - 1
    layers: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for node in sorted(layer):
        layers[layer[node]].append(node)
    for _ in range(2):  # barycenter sweeps: forward on predecessors, then backward on successors
        for neighbours, order in ((graph.predecessors, range(1, len(layers))),
                                  (graph.successors, range(len(layers) - 2, -1, -1))):
            for k in order:
                rank = {n: i for group in layers for i, n in enumerate(group)}
                layers[k].sort(key=lambda n: _barycenter([rank[m] for m in neighbours(n)], rank[n]))
    height = FONT_SIZE + 2 * PAD
    tallest = max(len(group) for group in layers) * (height + ROW_GAP)
    boxes, x = {}, 0.0
    for group in layers:
        width = max(_label_width(n) for n in group) + 2 * PAD
        top = (tallest + len(group) * (height + ROW_GAP)) / 2  # centre each column vertically
        for i, node in enumerate(group):
            y1 = top - i * (height + ROW_GAP)
            boxes[node] = Box(x, y1 - height, x + width, y1)
        x += width + COLUMN_GAP
    return boxes


def _barycenter(ranks: list[int], own: int) -> float:
    return sum(ranks) / len(ranks) if ranks else own


def draw_boxes(boxes: dict[str, Box], edges: list[tuple[str, str]], path: Path) -> dict[str, Box]:
    """Draw at 72 units per inch, so a point of the layout is a point on the page; return the extent of
    each label as the renderer drew it (in points), to check against the layout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    width = max(b.x1 for b in boxes.values()) + 2 * PAD
    height = max(b.y1 for b in boxes.values()) + FONT_SIZE * 4
    fig = plt.figure(figsize=(width / 72, height / 72))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set(xlim=(-PAD, width - PAD), ylim=(0, height))
    ax.axis("off")
    for source, target in edges:
        a, b = boxes[source], boxes[target]
        ax.add_patch(FancyArrowPatch(
            (a.x1, (a.y0 + a.y1) / 2), (b.x0, (b.y0 + b.y1) / 2), arrowstyle="-|>", mutation_scale=7,
            color="#9a9a9a", linewidth=0.6, shrinkA=0, shrinkB=0, zorder=1))
    computed, texts = {target for _, target in edges}, {}
    for node, box in boxes.items():
        ax.add_patch(Rectangle((box.x0, box.y0), box.x1 - box.x0, box.y1 - box.y0, zorder=2, linewidth=0.6,
                               facecolor="#f2c14e" if node in computed else "#ececec", edgecolor="#555555"))
        texts[node] = ax.text((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2, node, fontsize=FONT_SIZE,
                              ha="center", va="center", zorder=3)
    ax.text(0, height - FONT_SIZE * 1.5, "logos workflow DAG, left to right (yellow: computed by a stage; grey: "
            "inputs and settings; the run context every stage gets is left out). Graphviz's dot was not found: "
            "install graphviz for the full picture.", fontsize=FONT_SIZE, va="center")
    fig.savefig(path, dpi=110)
    renderer, to_points = fig.canvas.get_renderer(), ax.transData.inverted()
    labels = {}
    for node, text in texts.items():
        (x0, y0), (x1, y1) = to_points.transform(text.get_window_extent(renderer).get_points())
        labels[node] = Box(x0, y0, x1, y1)
    plt.close(fig)
    return labels
