"""The data lesson's pure figure and table builders: a Result in, a plotly Figure or pandas DataFrame out.

Every builder takes `tr`, a function from a text key to the words to show, so the same figure is
drawn in any language without this module knowing about languages.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.charts import STORAGE_COLORS, Figure, Text, finish, subplots, trace
from core.lessons.data.batches import BatchesResult
from core.lessons.data.collate import CollateResult
from core.lessons.data.datasets import SetsResult
from core.lessons.data.seeds import SeedsResult, per_worker
from core.lessons.data.workers import WorkersResult
from core.memo import same_inputs


@same_inputs
def batch_grid(r: BatchesResult, tr: Text) -> Figure:
    """One row per epoch, one cell per drawn sample (its index written in it), coloured by the batch it landed in.

    The last batch of an epoch is outlined in red when it is smaller than batch_size (a partial batch).
    """
    epochs, width = r.order.shape
    n_colors = len(STORAGE_COLORS)
    # A discrete colour scale: batch b gets colour b mod 8; positions nothing was yielded at stay empty.
    z = np.where(r.batch >= 0, r.batch % n_colors, np.nan).astype(float)
    scale = [[k / n_colors + e / n_colors, STORAGE_COLORS[k]] for k in range(n_colors) for e in (0.0, 0.999)]
    text = np.where(r.order >= 0, r.order.astype(str), "")
    hover = [
        [
            f"{tr('epoch')} {e}, {tr('batch')} {r.batch[e, i]}, {tr('sample')} {r.order[e, i]}" if r.order[e, i] >= 0 else ""
            for i in range(width)
        ]
        for e in range(epochs)
    ]
    fig = Figure(
        trace(
            "heatmap",
            z=z,
            x=list(range(width)),
            y=list(range(epochs)),
            text=text,
            texttemplate="%{text}",
            hovertext=hover,
            hoverinfo="text",
            colorscale=scale,
            zmin=0,
            zmax=n_colors,
            showscale=False,
            xgap=2,
            ygap=2,
        )
    )
    for e, sizes in enumerate(r.batch_sizes):
        if sizes and sizes[-1] < r.batch_size:
            start = sum(sizes[:-1])
            fig.add_shape(
                type="rect",
                x0=start - 0.5,
                x1=start + sizes[-1] - 0.5,
                y0=e - 0.5,
                y1=e + 0.5,
                line={"color": "#d62728", "width": 3},
            )
    fig.update_xaxes(title=tr("position"), dtick=1 if width <= 32 else 4)
    fig.update_yaxes(title=tr("epoch"), autorange="reversed", dtick=1)
    return finish(fig, tr("grid_title"), height=max(220, 90 + 48 * epochs))


@same_inputs
def class_counts_table(r: BatchesResult, tr: Text) -> pd.DataFrame:
    """Return the samples of each class yielded per epoch, next to what the sampler's weights predict."""
    rows: dict[str, list[float]] = {
        f"{tr('epoch')} {e}": [int(c) for c in r.class_counts[e]] for e in range(len(r.class_counts))
    }
    rows[tr("expected")] = [round(float(c), 2) for c in r.expected_counts]
    return pd.DataFrame.from_dict(rows, orient="index", columns=[f"{tr('class')} 0", f"{tr('class')} 1"])


BATCHES_DRAWN = 6  # padded batches drawn side by side; more would be too narrow to read


@same_inputs
def padded_figure(r: CollateResult, tr: Text) -> Figure:
    """The first padded batches as pad_sequence returned them (rows x columns as the tensor's shape), padding in grey."""
    shown = r.padded[:BATCHES_DRAWN]
    titles = [f"{tr('batch')} {b}: {tuple(x.shape)}" for b, x in enumerate(shown)]
    fig = subplots(rows=1, cols=len(shown), subplot_titles=titles, horizontal_spacing=0.04)
    for b, x in enumerate(shown):
        lengths = r.lengths[list(r.batches[b])]
        steps = np.arange(x.shape[1] if r.batch_first else x.shape[0])
        real = steps[None, :] < lengths[:, None]  # (sequence, step): a token, not padding
        mask = real if r.batch_first else real.T
        fig.add_trace(
            trace(
                "heatmap",
                z=np.where(mask, 1.0, 0.0),
                text=x.astype(str),
                texttemplate="%{text}",
                colorscale=[[0, "#d9d9d9"], [1, STORAGE_COLORS[0]]],
                zmin=0,
                zmax=1,
                showscale=False,
                xgap=2,
                ygap=2,
                hoverinfo="skip",
            ),
            row=1,
            col=b + 1,
        )
        fig.update_xaxes(title=tr("dim1"), dtick=1, row=1, col=b + 1)
        fig.update_yaxes(autorange="reversed", dtick=1, showticklabels=b == 0, row=1, col=b + 1)
    fig.update_yaxes(title=tr("dim0"), row=1, col=1)
    rows = max(x.shape[0] for x in shown)
    return finish(fig, tr("padded_title"), height=max(240, 130 + 34 * rows))


@same_inputs
def collate_table(r: CollateResult, tr: Text) -> pd.DataFrame:
    """Return, per batch, its samples and what each collate_fn made of them (or that default_collate raised)."""
    return pd.DataFrame(
        {
            tr("batch"): list(range(len(r.batches))),
            tr("samples"): [str(list(b)) for b in r.batches],
            tr("lengths"): [str(r.lengths[list(b)].tolist()) for b in r.batches],
            "default_collate": [shape or tr("raised") for shape in r.default_shapes],
            "pad_collate": list(r.pad_shapes),
            "dict_collate": list(r.dict_shapes),
        }
    )


@same_inputs
def throughput_figure(r: WorkersResult, tr: Text) -> Figure:
    """Samples/s against num_workers, one line per epoch, and the ideal scaling from num_workers=0 (dashed)."""
    fig = Figure()
    x = r.workers.tolist()
    for e in range(r.samples_per_s.shape[1]):
        name = tr("first_epoch") if e == 0 else f"{tr('epoch')} {e}"
        fig.add_scatter(x=x, y=r.samples_per_s[:, e], mode="lines+markers", name=name, line={"color": STORAGE_COLORS[e]})
    if 0 in x:
        base = float(r.samples_per_s[x.index(0), -1])
        # Waiting items overlap in any number of workers; busy ones only as far as there are cores.
        factor = [float(max(1, w) if r.cost_kind == "sleep" else min(max(1, w), r.cores)) for w in x]
        fig.add_scatter(
            x=x, y=[base * f for f in factor], mode="lines", name=tr("ideal"), line={"dash": "dash", "color": "#222222"}
        )
    fig.update_xaxes(title=tr("num_workers"), tickvals=x)
    fig.update_yaxes(title=tr("samples_per_s"), rangemode="tozero")
    return finish(fig, tr("throughput_title"))


@same_inputs
def seconds_table(r: WorkersResult, tr: Text) -> pd.DataFrame:
    """Return seconds and samples/s per epoch for each worker count."""
    data: dict[str, list[str]] = {tr("num_workers"): [str(w) for w in r.workers.tolist()]}
    for e in range(r.seconds.shape[1]):
        data[f"{tr('epoch')} {e}: s"] = [f"{v:.3f}" for v in r.seconds[:, e]]
        data[f"{tr('epoch')} {e}: {tr('samples_per_s')}"] = [f"{v:.0f}" for v in r.samples_per_s[:, e]]
    return pd.DataFrame(data)


@same_inputs
def draws_table(r: SeedsResult, m: int, tr: Text) -> pd.DataFrame:
    """Return one mode's draws: a row per (epoch, worker), a column per draw, in the order the worker drew them."""
    rows, index = [], []
    for e in range(r.draw.shape[1]):
        for w, draws in enumerate(per_worker(r, m, e)):
            index.append(f"{tr('epoch')} {e}, {tr('worker')} {w}")
            rows.append(draws)
    width = max((len(row) for row in rows), default=0)
    columns = [f"{tr('draw')} {k + 1}" for k in range(width)]
    return pd.DataFrame([[str(v) for v in row] + [""] * (width - len(row)) for row in rows], index=index, columns=columns)


@same_inputs
def datasets_table(r: SetsResult, tr: Text) -> pd.DataFrame:
    """Return, per kind of dataset, len(dataset), dataset[index], len(loader), the batches yielded and the first batch."""
    return pd.DataFrame(
        {
            "len(dataset)": list(r.length),
            "dataset[index]": list(r.item),
            "len(loader)": list(r.loader_length),
            tr("yielded"): list(r.batches),
            tr("first_batch"): list(r.first_batch),
        },
        index=[tr(kind) for kind in r.kinds],
    )
