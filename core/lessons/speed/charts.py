"""Figures and tables of the "Speed and memory" lesson (pure: result and translator in, figure out)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.charts import MB, Figure, Text, finish, memory_time_figure
from core.lessons.speed.cudnn import CudnnResult
from core.lessons.speed.footprint import FootprintResult
from core.lessons.speed.leak import LeakResult
from core.lessons.speed.profiler import ProfilerResult
from core.lessons.speed.scaling import ScalingResult
from core.lessons.speed.timing import TimingResult
from core.lessons.speed.transfer import TransferResult
from core.memo import same_inputs

CLOCK_STYLE = {"naive": ("#e45756", "dot"), "sync": ("#4c78a8", "solid"), "events": ("#54a24b", "dash")}
DEVICE_COLORS = {"cpu": "#4c78a8", "gpu": "#e45756"}
WAY_STYLE = {"tensor": ("#e45756", "solid"), "item": ("#4c78a8", "solid"), "detach": ("#54a24b", "dash")}


def _ms(seconds: float | None) -> str:
    """Return seconds as milliseconds with 3 significant digits ('—' when there is none)."""
    return "—" if seconds is None or seconds != seconds else f"{1e3 * seconds:.3g}"


@same_inputs
def timing_figure(r: TimingResult, tr: Text) -> Figure:
    """Time of every call, from the cold first one, by each clock (log scale); benchmark's median as a line."""
    fig = Figure()
    calls = np.arange(1, len(r.naive) + 1)
    clocks = [("naive", r.naive), ("sync", r.sync), ("events", r.events)]
    for name, seconds in clocks:
        if seconds is None or (name == "sync" and r.sync_is_naive):
            continue  # on the CPU the synchronised clock reads exactly the naive one: one line says it
        color, dash = CLOCK_STYLE[name]
        label = tr("naive_and_sync") if name == "naive" and r.sync_is_naive else tr(name)
        fig.add_scatter(x=calls, y=1e3 * seconds, mode="lines+markers", name=label, line={"color": color, "dash": dash})
    fig.add_hline(
        y=1e3 * r.bench_median,
        line_dash="dot",
        line_color="#333333",
        annotation_text=f"{tr('benchmark')}: {_ms(r.bench_median)} ms",
        annotation_position="top right",
    )
    shown = np.concatenate([s for _, s in clocks if s is not None] + [np.array([r.bench_median])]) * 1e3
    fig.update_xaxes(title=tr("call"))
    # An explicit range: plotly pads a log axis with an hline on it by decades.
    fig.update_yaxes(
        type="log", title=tr("ms_log"), exponentformat="power", range=[np.log10(shown.min() / 1.5), np.log10(shown.max() * 1.5)]
    )
    return finish(fig, tr("timing_title"), height=380)


def timing_caption(r: TimingResult) -> dict[str, str]:
    """Return the timing caption's values: the first call and the median of the others, in ms (3 significant digits)."""
    return {"first": f"{1e3 * r.sync[0]:.3g}", "rest": f"{1e3 * float(np.median(r.sync[1:])):.3g}"}


@same_inputs
def timing_table(r: TimingResult, tr: Text) -> pd.DataFrame:
    """Return each way of timing with its median, first call and TFLOP/s."""
    rows = [
        ("naive", r.naive, r.naive_median),
        ("sync", r.sync, r.sync_median),
        ("events", r.events, r.events_median),
        ("benchmark", None, r.bench_median),
    ]
    return pd.DataFrame(
        {
            tr("clock"): [tr(name) for name, _, _ in rows],
            tr("median_ms"): [_ms(median) for _, _, median in rows],
            tr("first_ms"): [_ms(None if s is None else float(s[0])) for _, s, _ in rows],
            "TFLOP/s": ["—" if m is None else f"{r.flops / m / 1e12:.3g}" for _, _, m in rows],
        }
    )


@same_inputs
def scaling_figure(r: ScalingResult, tr: Text, quantity: str) -> Figure:
    """Time per call ('time') or achieved TFLOP/s ('tflops') against size on log-log axes, CPU and GPU."""
    fig = Figure()
    series = [
        ("cpu", r.cpu_name, r.cpu_seconds, r.cpu_tflops, r.cpu_peak_tflops),
        ("gpu", r.gpu_name, r.gpu_seconds, r.gpu_tflops, r.gpu_peak_tflops),
    ]
    for kind, name, seconds, tflops, peak in series:
        if seconds is None or tflops is None:
            continue
        y = 1e3 * seconds if quantity == "time" else tflops
        # The CPU's thread count is part of what is compared: say it on the line itself.
        threads = f" ({r.cpu_threads} {tr('threads')})" if kind == "cpu" else ""
        label = f"{tr(kind)}: {name}{threads}"
        fig.add_scatter(x=r.sizes, y=y, mode="lines+markers", name=label, line={"color": DEVICE_COLORS[kind], "width": 3})
        if quantity == "tflops" and peak is not None:
            label = tr("cpu_peak") if kind == "cpu" else tr("gpu_peak")
            fig.add_hline(
                y=peak,
                line_dash="dot",
                line_color=DEVICE_COLORS[kind],
                annotation_text=f"{label}: {peak:.3g}",
                annotation_position="top left",
            )
    if r.crossover is not None:
        fig.add_vline(x=r.crossover, line_dash="dash", annotation_text=f"{tr('crossover')}: {r.crossover}")
    fig.update_xaxes(type="log", title=tr(f"size_{r.op}"), tickvals=r.sizes, ticktext=[str(n) for n in r.sizes])
    fig.update_yaxes(type="log", title=tr("ms_log" if quantity == "time" else "tflops"), exponentformat="power")
    return finish(fig, tr(f"{quantity}_title"), height=380)


@same_inputs
def scaling_table(r: ScalingResult, tr: Text) -> pd.DataFrame:
    """Return per size: FLOPs, CPU (and GPU) time, TFLOP/s and fraction of the reference peak."""
    columns: dict[str, list[str]] = {
        tr(f"size_{r.op}"): [str(n) for n in r.sizes],
        "GFLOP": [f"{f / 1e9:.3g}" for f in r.flops],
        tr("cpu_ms"): [_ms(float(s)) for s in r.cpu_seconds],
        tr("cpu_tflops"): ["—" if v != v else f"{v:.3g}" for v in r.cpu_tflops],
        tr("cpu_fraction"): ["—" if v != v else f"{v:.0%}" for v in r.cpu_fraction],
    }
    if r.gpu_seconds is not None and r.gpu_tflops is not None:
        columns[tr("gpu_ms")] = [_ms(float(s)) for s in r.gpu_seconds]
        columns[tr("gpu_tflops")] = [f"{v:.3g}" for v in r.gpu_tflops]
        if r.gpu_fraction is not None:
            columns[tr("gpu_fraction")] = [f"{v:.1%}" for v in r.gpu_fraction]
    return pd.DataFrame(columns)


@same_inputs
def cudnn_figure(r: CudnnResult, tr: Text) -> Figure:
    """Time of every forward pass for each input-shape mode with cudnn.benchmark off and on (log scale)."""
    fig = Figure()
    colors = {"fixed": "#4c78a8", "varying": "#e45756"}
    for i, shape in enumerate(r.shapes):
        for j, on in enumerate(r.benchmark):
            fig.add_scatter(
                x=np.arange(1, r.seconds.shape[2] + 1),
                y=1e3 * r.seconds[i, j],
                mode="lines+markers",
                name=f"{tr(shape)}, benchmark={'on' if on else 'off'}",
                line={"color": colors[shape], "dash": "solid" if on else "dot"},
            )
    fig.update_xaxes(title=tr("iteration"))
    fig.update_yaxes(type="log", title=tr("ms_log"), exponentformat="power")
    return finish(fig, tr("cudnn_title"), height=380)


@same_inputs
def cudnn_table(r: CudnnResult, tr: Text) -> pd.DataFrame:
    """Return median and total time per shape mode and benchmark setting."""
    rows = [(i, j) for i in range(len(r.shapes)) for j in range(len(r.benchmark))]
    return pd.DataFrame(
        {
            tr("shapes"): [tr(r.shapes[i]) for i, _ in rows],
            "cudnn.benchmark": [str(r.benchmark[j]) for _, j in rows],
            tr("median_ms"): [_ms(float(r.median[i, j])) for i, j in rows],
            tr("total_ms"): [_ms(float(r.total[i, j])) for i, j in rows],
        }
    )


@same_inputs
def footprint_table(r: FootprintResult, tr: Text) -> pd.DataFrame:
    """Return per grad mode and ReLU kind: bytes saved for backward, new outputs allocated (and the CUDA peak)."""
    rows = [(i, j) for i in range(len(r.modes)) for j in range(len(r.relus))]
    columns: dict[str, list[str]] = {
        tr("grad_mode"): [tr(r.modes[i]) for i, _ in rows],
        "ReLU": [tr(r.relus[j]) for _, j in rows],
        tr("saved_mb"): [f"{r.saved_bytes[i, j] / MB:.3f}" for i, j in rows],
        tr("new_mb"): [f"{r.new_bytes[i, j] / MB:.3f}" for i, j in rows],
        tr("new_tensors"): [str(int(r.new_tensors[i, j])) for i, j in rows],
    }
    if r.cuda_peak_bytes is not None:
        peaks = r.cuda_peak_bytes
        columns[tr("peak_mb")] = [f"{peaks[i, j] / MB:.3f}" for i, j in rows]
    return pd.DataFrame(columns)


def checkpoint_caption(r: FootprintResult) -> dict[str, str]:
    """Return the checkpoint caption's value: the largest gradient difference from the plain run."""
    return {"diff": f"{float(r.ckpt_grad_max_diff.max()):.1e}"}


@same_inputs
def checkpoint_figure(r: FootprintResult, tr: Text) -> Figure:
    """Bars: bytes kept for backward per number of checkpoint segments (and theory); red: time per training step."""
    x = [str(s) for s in r.segments]
    cuda = r.ckpt_cuda_peak_bytes is not None
    memory = r.ckpt_cuda_peak_bytes if r.ckpt_cuda_peak_bytes is not None else r.ckpt_saved_bytes
    half_iqr = (1e3 * r.ckpt_step_iqr / 2).tolist()
    fig = memory_time_figure(
        x,
        (memory / MB).tolist(),
        (1e3 * r.ckpt_step_seconds).tolist(),
        (half_iqr, half_iqr),
        (tr("segments"), tr("peak_mb" if cuda else "saved_mb"), tr("step_ms")),
        tr("checkpoint_title"),
    )
    fig.add_scatter(
        x=x,
        y=r.ckpt_theory_bytes / MB,
        mode="markers",
        name=tr("theory_mb"),
        marker={"symbol": "diamond", "size": 11, "color": "#333333"},
    )
    return fig


def _concat(parts: Sequence[TransferResult], pick: str) -> np.ndarray:
    """Return one field of every part joined along the size axis (the last axis)."""
    return np.concatenate([np.asarray(getattr(r, pick)) for r in parts], axis=-1)


@same_inputs
def transfer_figure(parts: Sequence[TransferResult], tr: Text) -> Figure:
    """Bandwidth (GB/s) against size: torch.tensor's copy from numpy, and on CUDA each host-device copy."""
    sizes = _concat(parts, "sizes")
    fig = Figure()
    fig.add_scatter(
        x=sizes,
        y=_concat(parts, "tensor_gbps"),
        mode="lines+markers",
        name=tr("tensor_copy"),
        line={"color": "#4c78a8", "width": 3},
    )
    if all(r.gpu_gbps is not None for r in parts):
        gbps = _concat(parts, "gpu_gbps")
        for i, method in enumerate(parts[0].gpu_methods):
            fig.add_scatter(x=sizes, y=gbps[i], mode="lines+markers", name=tr(method))
    fig.update_xaxes(type="log", title=tr("bytes"), exponentformat="SI")
    fig.update_yaxes(type="log", title=tr("gbps"), exponentformat="power")
    return finish(fig, tr("transfer_title"), height=380)


def transfer_table(parts: Sequence[TransferResult], tr: Text) -> pd.DataFrame:
    """Return per numpy conversion and size: time per call and whether the tensor shares the array's memory."""
    sizes, seconds, shares = _concat(parts, "sizes"), _concat(parts, "numpy_seconds"), _concat(parts, "shares_memory")
    rows = [(i, j) for i in range(len(parts[0].numpy_methods)) for j in range(len(sizes))]
    return pd.DataFrame(
        {
            tr("way"): [f"torch.{parts[0].numpy_methods[i]}(array)" for i, _ in rows],
            tr("bytes"): [f"{int(sizes[j]):,}" for _, j in rows],
            tr("us"): [f"{1e6 * seconds[i, j]:.3g}" for i, j in rows],
            tr("shares"): ["✓" if shares[i, j] else "✗" for i, j in rows],
        }
    )


@same_inputs
def leak_figure(r: LeakResult, tr: Text) -> Figure:
    """Saved bytes still held after each step, per way of adding up the loss, with one step's graph times the steps dotted."""
    fig = Figure()
    steps = r.steps
    fig.add_scatter(
        x=steps, y=steps * r.step_bytes / MB, mode="lines", name=tr("every_graph"), line={"color": "#999999", "dash": "dot"}
    )
    for i, way in enumerate(r.ways):
        color, dash = WAY_STYLE[way]
        fig.add_scatter(
            x=steps, y=r.kept_bytes[i] / MB, mode="lines+markers", name=tr(way), line={"color": color, "dash": dash}
        )
    fig.update_xaxes(title=tr("step"), dtick=max(1, len(steps) // 10))
    fig.update_yaxes(title=tr("kept_mb"), rangemode="tozero")
    return finish(fig, tr("leak_title"), height=380)


@same_inputs
def leak_cuda_figure(r: LeakResult, tr: Text) -> Figure:
    """On CUDA: memory_allocated and memory_reserved above the loop's start after each step, per way (MB)."""
    fig = Figure()
    assert r.cuda_allocated is not None and r.cuda_reserved is not None
    for i, way in enumerate(r.ways):
        color, _ = WAY_STYLE[way]
        fig.add_scatter(
            x=r.steps,
            y=r.cuda_allocated[i] / MB,
            mode="lines+markers",
            name=f"{tr(way)}: memory_allocated",
            line={"color": color},
        )
        fig.add_scatter(
            x=r.steps,
            y=r.cuda_reserved[i] / MB,
            mode="lines",
            name=f"{tr(way)}: memory_reserved",
            line={"color": color, "dash": "dot"},
        )
    fig.update_xaxes(title=tr("step"), dtick=max(1, len(r.steps) // 10))
    fig.update_yaxes(title=tr("cuda_mb"), rangemode="tozero")
    return finish(fig, tr("cuda_title"), height=400)


@same_inputs
def leak_table(r: LeakResult, tr: Text) -> pd.DataFrame:
    """Return per way: the total reached, whether it requires grad, its graph's nodes, bytes held at the end and after del."""
    columns: dict[str, list[str]] = {
        tr("way"): [tr(way) for way in r.ways],
        "total_loss": [f"{v:.6f}" for v in r.total_loss],
        "requires_grad": ["✓" if v else "✗" for v in r.total_requires_grad],
        tr("nodes"): [str(int(v)) for v in r.graph_nodes[:, -1]],
        tr("kept_end_mb"): [f"{v / MB:.3f}" for v in r.kept_bytes[:, -1]],
        tr("after_del_mb"): [f"{v / MB:.3f}" for v in r.after_del_bytes],
    }
    if r.cuda_after_del is not None and r.cuda_after_empty_cache is not None:
        columns[tr("del_allocated_mb")] = [f"{v / MB:.3f}" for v in r.cuda_after_del[:, 0]]
        columns[tr("del_reserved_mb")] = [f"{v / MB:.3f}" for v in r.cuda_after_del[:, 1]]
        columns[tr("empty_reserved_mb")] = [f"{v / MB:.3f}" for v in r.cuda_after_empty_cache[:, 1]]
    return pd.DataFrame(columns)


@same_inputs
def profiler_table(r: ProfilerResult, tr: Text) -> pd.DataFrame:
    """Return the profiled step's top ops: calls, self and total CPU time (µs), share of the step, and CUDA time on a GPU."""
    total = r.total_self_cpu_us or 1.0
    columns: dict[str, list[str]] = {
        tr("op"): list(r.names),
        tr("calls"): [str(int(n)) for n in r.calls],
        tr("self_cpu_us"): [f"{v:.4g}" for v in r.self_cpu_us],
        tr("self_cpu_share"): [f"{v / total:.1%}" for v in r.self_cpu_us],
        tr("cpu_total_us"): [f"{v:.4g}" for v in r.cpu_total_us],
    }
    if r.self_cuda_us is not None:
        columns[tr("self_cuda_us")] = [f"{v:.4g}" for v in r.self_cuda_us]
    return pd.DataFrame(columns)
