"""Figures and tables of the "Devices and many GPUs" lesson (pure: result and translator in, figure or table out)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.charts import Figure, Text, finish, sci
from core.lessons.devices.checkpoint import CkptResult
from core.lessons.devices.dataparallel import DPResult
from core.lessons.devices.facts import FactsResult, Transfer
from core.lessons.devices.moves import MovesResult
from core.lessons.devices.pipeline import PipeResult, transfer_seconds
from core.lessons.devices.visible import VisibleResult
from core.memo import same_inputs

GIB = 2**30
COPY_COLOR, NO_COPY_COLOR = "#4c78a8", "#bab0ac"
NAIVE_COLOR, GLOBAL_COLOR, WEIGHTED_COLOR = "#e45756", "#333333", "#54a24b"
REPLICA_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#eeca3b", "#9d755d", "#bab0ac")


def us(seconds: float) -> str:
    """Return seconds as microseconds: three significant digits, whole numbers with separators from 1000 µs."""
    v = seconds * 1e6
    return f"{v:,.0f}" if v >= 1000 else f"{v:.3g}"


def _yes_no(value: bool, tr: Text) -> str:
    return tr("yes") if value else tr("no")


# --------------------------------------------------------------------------------------------
# 1. Device facts and the cost of .to(...)


def transfers(r: FactsResult) -> list[Transfer]:
    """Return the timed calls of r in the lesson's order: those on the CPU, then those only a GPU has."""
    found = (r.to_cpu, r.to_float64, r.clone, r.to_cuda, r.dot_cuda, r.pinned_to_cuda, r.back_to_cpu)
    return [x for x in found if x is not None]


@same_inputs
def facts_table(r: FactsResult, tr: Text) -> pd.DataFrame:
    """Return one row per fact of the server: device, CPU, threads, versions, GPUs."""
    rows = [
        (tr("device"), r.device),
        (tr("cpu_model"), r.cpu_model),
        (tr("cores"), str(r.cores)),
        (tr("threads"), str(r.threads)),
        ("torch.__version__", r.torch_version),
        ("torch.cuda.is_available()", _yes_no(r.cuda_available, tr)),
        ("torch.version.cuda", str(r.cuda_version)),
        ("torch.cuda.device_count()", str(len(r.gpus))),
    ]
    return pd.DataFrame({tr("property"): [k for k, _ in rows], tr("value"): [v for _, v in rows]})


@same_inputs
def gpus_table(r: FactsResult, tr: Text) -> pd.DataFrame:
    """Return one row per visible GPU: name, memory (GiB), compute capability, streaming multiprocessors."""
    return pd.DataFrame(
        {
            tr("gpu_index"): [f"cuda:{g.index}" for g in r.gpus],
            tr("gpu_name"): [g.name for g in r.gpus],
            tr("memory_gib"): [f"{g.total_memory / GIB:.1f}" for g in r.gpus],
            tr("capability"): [f"{g.capability[0]}.{g.capability[1]}" for g in r.gpus],
            tr("sms"): [g.multiprocessors for g in r.gpus],
        }
    )


@same_inputs
def transfer_table(r: FactsResult, tr: Text) -> pd.DataFrame:
    """Return one row per timed call: does it copy, median and IQR per call (µs), bytes moved per second."""
    calls = transfers(r)
    return pd.DataFrame(
        {
            tr("call"): [x.call for x in calls],
            tr("copies"): [_yes_no(x.copies, tr) for x in calls],
            tr("time_us"): [us(x.seconds) for x in calls],
            tr("iqr_us"): [us(x.iqr) for x in calls],
            tr("gbps"): ["—" if x.gbps is None else f"{x.gbps:.2f}" for x in calls],
        }
    )


@same_inputs
def transfer_figure(r: FactsResult, tr: Text) -> Figure:
    """Horizontal bars: median time per call (µs, log scale); copies in blue with their GB/s, no copy in grey."""
    fig = Figure()
    for copies, color, name in ((True, COPY_COLOR, tr("copy")), (False, NO_COPY_COLOR, tr("no_copy"))):
        calls = [x for x in transfers(r) if x.copies == copies]
        if not calls:
            continue
        text = [tr("no_copy") if x.gbps is None else f"{x.gbps:.2f} GB/s" for x in calls]
        fig.add_bar(
            y=[x.call for x in calls],
            x=[x.seconds * 1e6 for x in calls],
            orientation="h",
            name=name,
            marker_color=color,
            text=text,
            textposition="auto",
            hovertemplate="%{y}: %{x:.3g} µs, %{text}<extra></extra>",
        )
    fig.update_xaxes(type="log", title=tr("time_axis"), exponentformat="power")
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=[x.call for x in transfers(r)])
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return finish(fig, tr("transfer_title").format(mb=r.nbytes // 2**20), height=140 + 45 * len(transfers(r)))


# --------------------------------------------------------------------------------------------
# 2. DataParallel by simulation


def replica_of_sample(r: DPResult) -> np.ndarray:
    """Return, for each sample of the batch, the index of the replica its chunk went to."""
    return np.repeat(np.arange(len(r.chunk_sizes)), r.chunk_sizes)


def _sample_labels(r: DPResult, tr: Text) -> list[str]:
    return [tr("sample_label").format(j=j, i=int(i)) for j, i in enumerate(replica_of_sample(r))]


@same_inputs
def dp_replicas_table(r: DPResult, tr: Text) -> pd.DataFrame:
    """Return one row per replica: its samples, their losses, its mean and sum, and each sample's weight 1/(k n_i)."""
    starts = np.concatenate([[0], np.cumsum(r.chunk_sizes)])
    k = len(r.chunk_sizes)
    return pd.DataFrame(
        {
            tr("replica"): [f"cuda:{i}" for i in range(k)],
            tr("samples"): [
                f"{starts[i]}–{starts[i + 1] - 1}" if n > 1 else str(starts[i]) for i, n in enumerate(r.chunk_sizes)
            ],
            tr("chunk_size"): list(r.chunk_sizes),
            tr("losses"): [", ".join(f"{v:.4g}" for v in r.losses[starts[i] : starts[i + 1]]) for i in range(k)],
            tr("replica_mean"): [f"{v:.6g}" for v in r.replica_means],
            tr("replica_sum"): [f"{v:.6g}" for v in r.replica_sums],
            tr("weight_each"): [f"1/{k * n} = {1 / (k * n):.4g}" for n in r.chunk_sizes],
        }
    )


@same_inputs
def dp_reductions_table(r: DPResult, tr: Text) -> pd.DataFrame:
    """Return the four reductions of the batch's losses: their code, value and distance from the one-device mean."""
    rows = [
        ("global_mean", "losses.mean()", r.global_mean),
        ("mean_of_means", "torch.stack(means).mean()", r.mean_of_means),
        ("weighted_mean", "(sizes * means).sum() / N", r.weighted_mean),
        ("sum_then_divide", "torch.stack(sums).sum() / N", r.sum_then_divide),
    ]
    return pd.DataFrame(
        {
            tr("reduction"): [tr(name) for name, _, _ in rows],
            tr("code"): [code for _, code, _ in rows],
            tr("value"): [f"{v:.6g}" for _, _, v in rows],
            tr("minus_global"): [sci(v - r.global_mean) for _, _, v in rows],
        }
    )


@same_inputs
def dp_losses_figure(r: DPResult, tr: Text) -> Figure:
    """Bars of the per-sample losses coloured by replica, each replica's mean, the batch mean and the mean of means."""
    replica = replica_of_sample(r)
    x = np.arange(r.batch)
    fig = Figure()
    fig.add_bar(
        x=x,
        y=r.losses,
        name=tr("loss"),
        marker_color=[REPLICA_COLORS[i % len(REPLICA_COLORS)] for i in replica],
        showlegend=False,
        hovertemplate="%{y:.4g}<extra></extra>",
    )
    for i, mean in enumerate(r.replica_means):
        idx = x[replica == i]
        fig.add_scatter(
            x=[idx[0] - 0.45, idx[-1] + 0.45],
            y=[mean, mean],
            mode="lines",
            showlegend=i == 0,
            name=tr("replica_mean"),
            legendgroup="replica",
            line={"color": "#555555", "width": 3},
            hovertemplate=f"cuda:{i}: %{{y:.4g}}<extra></extra>",
        )
    # The two averages as legend entries (an annotation would sit on top of the bars).
    for y, name, style in (
        (r.global_mean, "global_mean", {"color": GLOBAL_COLOR, "dash": "dash"}),
        (r.mean_of_means, "mean_of_means", {"color": NAIVE_COLOR, "dash": "dot", "width": 3}),
    ):
        fig.add_scatter(
            x=[-0.5, r.batch - 0.5],
            y=[y, y],
            mode="lines",
            name=f"{tr(name)} = {y:.4g}",
            line=style,
            hovertemplate="%{y:.4g}<extra>%{fullData.name}</extra>",
        )
    fig.update_xaxes(title=tr("sample_axis"), tickvals=x, ticktext=_sample_labels(r, tr))
    fig.update_yaxes(title=tr("loss"), rangemode="tozero")
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return finish(fig, tr("losses_title"), height=400)


@same_inputs
def dp_weights_figure(r: DPResult, tr: Text) -> Figure:
    """Grouped bars: each sample's weight in the mean of replica means, 1/(k n_i), against 1/N in the batch mean."""
    labels = _sample_labels(r, tr)
    fig = Figure()
    fig.add_bar(
        x=labels,
        y=r.naive_weights,
        name=tr("mean_of_means"),
        marker_color=NAIVE_COLOR,
        hovertemplate="%{x}: %{y:.4g}<extra></extra>",
    )
    fig.add_bar(
        x=labels,
        y=r.global_weights,
        name=tr("global_mean"),
        marker_color=GLOBAL_COLOR,
        hovertemplate="%{x}: %{y:.4g}<extra></extra>",
    )
    fig.update_xaxes(title=tr("sample_axis"), type="category")
    fig.update_yaxes(title=tr("weight_axis"), rangemode="tozero")
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.25})
    return finish(fig, tr("weights_title"), height=380)


@same_inputs
def dp_grad_figure(r: DPResult, tr: Text) -> Figure:
    """Scatter of the gradient entries: one device (x) against the size-weighted mean and the mean of means (y)."""
    lo = float(min(r.grad_full.min(), r.grad_naive.min(), r.grad_weighted.min()))
    hi = float(max(r.grad_full.max(), r.grad_naive.max(), r.grad_weighted.max()))
    fig = Figure()
    fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line={"color": "#999999", "dash": "dot"})
    fig.add_scatter(
        x=r.grad_full,
        y=r.grad_weighted,
        mode="markers",
        name=tr("weighted_mean"),
        marker={"color": WEIGHTED_COLOR, "size": 9, "opacity": 0.7},
    )
    fig.add_scatter(
        x=r.grad_full,
        y=r.grad_naive,
        mode="markers",
        name=tr("mean_of_means"),
        marker={"color": NAIVE_COLOR, "size": 6, "symbol": "x"},
    )
    fig.update_xaxes(title=tr("grad_full"))
    fig.update_yaxes(title=tr("grad_dp"))
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return finish(fig, tr("grad_title"), height=420)


# --------------------------------------------------------------------------------------------
# 3. Pipeline


@same_inputs
def pipeline_figure(r: PipeResult, tr: Text) -> Figure:
    """The U-curve: modelled time of the pipelined batch (ms) against the split size (log x), chosen and best marked.

    Dashed lines: the same two devices without micro-batches, and the whole model on one device.
    """
    ms = r.total_s * 1e3
    fig = Figure()
    fig.add_scatter(
        x=r.splits,
        y=ms,
        mode="lines+markers",
        name=tr("pipelined"),
        line={"color": COPY_COLOR, "width": 3},
        customdata=np.stack([r.chunks, 100 * r.utilisation], axis=-1),
        hovertemplate=tr("curve_hover") + "<extra></extra>",
    )
    fig.add_scatter(
        x=[r.split_size],
        y=[r.chosen_total_s * 1e3],
        mode="markers",
        name=tr("chosen").format(s=r.split_size),
        marker={"color": "#f58518", "size": 16, "symbol": "circle-open", "line": {"width": 3}},
    )
    fig.add_scatter(
        x=[r.best_split],
        y=[r.best_total_s * 1e3],
        mode="markers",
        name=tr("best").format(s=r.best_split),
        marker={"color": WEIGHTED_COLOR, "size": 16, "symbol": "star"},
    )
    # The two references as legend entries: their annotations would overlap, the lines often lie close.
    ends = [int(r.splits[0]), int(r.splits[-1])]
    for y, name, style in (
        (r.no_pipeline_s, "no_pipeline", {"color": NAIVE_COLOR, "dash": "dash"}),
        (r.single_device_s, "single_device", {"color": GLOBAL_COLOR, "dash": "dot"}),
    ):
        fig.add_scatter(
            x=ends,
            y=[y * 1e3] * 2,
            mode="lines",
            name=f"{tr(name)}: {y * 1e3:.3g} ms",
            line=style,
            hovertemplate="%{y:.3g} ms<extra>%{fullData.name}</extra>",
        )
    fig.update_xaxes(type="log", title=tr("split_axis"), tickvals=r.splits, ticktext=[str(s) for s in r.splits])
    fig.update_yaxes(type="log", title=tr("total_axis"))
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return finish(fig, tr("curve_title").format(batch=r.batch), height=440)


@same_inputs
def stage_times_figure(r: PipeResult, tr: Text) -> Figure:
    """Measured time per call of each stage and the modelled link time against the chunk size (log-log, µs)."""
    link = [transfer_seconds(int(n), r.width, r.transfer_gbps) * 1e6 for n in r.measured_sizes]
    fig = Figure()
    for y, name, color in ((r.stage1_s * 1e6, tr("stage1"), COPY_COLOR), (r.stage2_s * 1e6, tr("stage2"), "#f58518")):
        fig.add_scatter(x=r.measured_sizes, y=y, mode="lines+markers", name=name, line={"color": color})
    fig.add_scatter(
        x=r.measured_sizes,
        y=link,
        mode="lines",
        name=tr("link").format(gbps=f"{r.transfer_gbps:g}"),
        line={"color": "#999999", "dash": "dash"},
    )
    sizes = [int(n) for n in r.measured_sizes]
    fig.update_xaxes(type="log", title=tr("chunk_axis"), tickvals=sizes, ticktext=[str(n) for n in sizes])
    fig.update_yaxes(type="log", title=tr("time_axis"), exponentformat="power")
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return finish(fig, tr("stages_title"), height=380)


def measured_values(r: PipeResult) -> dict[str, str]:
    """Return the values of the page's sentence on the stage times: device, overhead and cost per sample (µs)."""
    (o1, o2), (s1, s2) = r.overhead_s, r.per_sample_s
    return {"device": r.device, "o1": us(o1), "o2": us(o2), "s1": us(s1), "s2": us(s2)}


@same_inputs
def pipeline_table(r: PipeResult, tr: Text) -> pd.DataFrame:
    """Return one row per split size: chunks, modelled total (ms), how busy the two devices are."""
    return pd.DataFrame(
        {
            tr("split"): [int(s) for s in r.splits],
            tr("chunks"): [int(m) for m in r.chunks],
            tr("total_ms"): [f"{v * 1e3:.4g}" for v in r.total_s],
            tr("utilisation"): [f"{u:.0%}" for u in r.utilisation],
        }
    )


# --------------------------------------------------------------------------------------------
# 4. Checkpoints


@same_inputs
def ckpt_saved_table(r: CkptResult, tr: Text) -> pd.DataFrame:
    """Return one row per saved tensor: key, shape, device when saved, device after torch.load(map_location=...)."""
    return pd.DataFrame(
        {
            tr("saved_key"): list(r.saved_keys),
            tr("shape"): [str(tuple(s)) for s in r.saved_shapes],
            tr("saved_device"): list(r.saved_devices),
            tr("loaded_device"): list(r.loaded_devices),
        }
    )


def key_outcome(key: str, r: CkptResult) -> str:
    """Return what load_state_dict made of one key: loaded, missing, unexpected, or filled (BatchNorm's own default)."""
    given, expected = key in r.fixed_keys, key in r.target_keys
    if given and expected:
        return "loaded"
    if expected:
        # BatchNorm fills in its own num_batches_tracked when a checkpoint lacks it, so torch does not report it.
        return "missing" if key in r.missing_keys else "filled"
    return "unexpected" if key in r.unexpected_keys else "ignored"


@same_inputs
def ckpt_keys_table(r: CkptResult, tr: Text) -> pd.DataFrame:
    """Return every key given or expected: is it in the checkpoint, in the receiving model, and what happened to it."""
    keys = list(r.target_keys) + [k for k in r.fixed_keys if k not in r.target_keys]
    return pd.DataFrame(
        {
            tr("key"): keys,
            tr("given"): [_yes_no(k in r.fixed_keys, tr) for k in keys],
            tr("expected"): [_yes_no(k in r.target_keys, tr) for k in keys],
            tr("outcome"): [tr(key_outcome(k, r)) for k in keys],
        }
    )


@same_inputs
def ckpt_equal_table(r: CkptResult, tr: Text) -> pd.DataFrame:
    """Return, per key of the plain model, whether the new model now holds the saved value."""
    return pd.DataFrame(
        {
            tr("model_key"): list(r.model_keys),
            tr("equal"): [_yes_no(e, tr) for e in r.equal_per_key],
        }
    )


@same_inputs
def moves_table(r: MovesResult, tr: Text) -> pd.DataFrame:
    """Return one row per call: what it returned (`is` the original?) and what became of the original."""
    d = r.dtype
    rows = [
        (f"m.to(torch.{d})", r.module_same, f"m.weight: {r.param_dtype}"),
        ("w is m.weight", r.param_same, f"w.dtype: {r.param_dtype}"),
        ("m.cpu()", r.module_cpu_same, ""),
        (f"t.to(torch.{d})", r.tensor_same, f"t.dtype: {r.tensor_dtype}; {tr('result')}: {r.new_dtype}"),
        (f"t.to(torch.{d}, copy=True)", r.tensor_copy_same, ""),
        (f"u = t.to(torch.{d}); u.add_(1)", r.tensor_same, tr("t_changed" if r.t_written else "t_same")),
        ("t.cpu()", r.tensor_cpu_same, ""),
    ]
    if r.module_cuda_same is not None:
        rows.append(("m.cuda()", r.module_cuda_same, f"m.weight.device: {r.weight_device}"))
        rows.append(("t.cuda()", bool(r.tensor_cuda_same), f"t.device: {r.tensor_device}"))
        rows.append((f"y.cuda()  ({tr('y_on_gpu')})", bool(r.cuda_tensor_cuda_same), ""))
    return pd.DataFrame(
        {
            tr("call"): [call for call, _, _ in rows],
            tr("same_object"): ["✓ " + tr("yes") if same else "✗ " + tr("no") for _, same, _ in rows],
            tr("afterwards"): [after for _, _, after in rows],
        }
    )


@same_inputs
def visible_table(r: VisibleResult, tr: Text) -> pd.DataFrame:
    """Return the renumbering on an imagined server of r.physical GPUs: each visible index and the physical GPU behind it."""
    return pd.DataFrame(
        {
            tr("child_index"): [f"cuda:{i}" for i in range(len(r.model_order))],
            tr("physical_gpu"): [f"GPU {j}" for j in r.model_order],
        }
    )
