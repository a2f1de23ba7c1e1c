"""Drawing the workflow DAG: Graphviz through Hamilton when ``dot`` is installed, else matplotlib."""

from __future__ import annotations

import shutil
from pathlib import Path


def draw_workflow(workflow: str, overrides: list[str] | None, out: str) -> Path:
    from workflows.config import load_workflow
    from workflows.runner import build_driver, make_workspace, stages_for

    loaded = load_workflow(workflow, overrides)
    dr = build_driver(make_workspace(loaded, workflow, None, dry_run=True), cache=False)
    stages = stages_for(dr, loaded.config.targets)
    path = Path(out)
    if shutil.which("dot"):
        dr.visualize_execution(stages, str(path.with_suffix("")), render_kwargs={"format": path.suffix[1:] or "png"},
                               inputs={})
        return path
    return _draw_with_matplotlib(dr, stages, path)


def _draw_with_matplotlib(dr, stages: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    graph = nx.DiGraph()
    for variable in dr.list_available_variables():
        if variable.name in stages:
            for dependency in variable.required_dependencies | variable.optional_dependencies:
                graph.add_edge(dependency, variable.name)
    for layer, names in enumerate(nx.topological_generations(graph)):
        for name in names:
            graph.nodes[name]["layer"] = layer
    positions = nx.multipartite_layout(graph, subset_key="layer", align="horizontal", scale=2)
    positions = {n: (x, -y) for n, (x, y) in positions.items()}
    fig, ax = plt.subplots(figsize=(16, 9))
    colors = ["#f2c14e" if n in stages else "#d9d9d9" for n in graph.nodes]
    nx.draw_networkx(graph, positions, ax=ax, node_color=colors, node_size=1400, font_size=7, arrows=True,
                     node_shape="s")
    ax.set_title("logos workflow DAG (yellow: stages, grey: inputs and settings)")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
