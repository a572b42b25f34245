"""The init lesson's `fans`, `signal` and `train` against theory, torch itself, or a computation written here."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from core.experiment import Prediction
from core.lessons.init import common as init_common
from core.lessons.init import dist as init_dist
from core.lessons.init import fans as init_fans
from core.lessons.init import signal as init_signal
from core.lessons.init import train as init_train
from core.lessons.init.common import BINS, SIGNAL_SCHEMES
from core.lessons.init.dist import DistParams
from core.lessons.init.fans import FansParams
from core.lessons.init.signal import SignalParams
from core.lessons.init.train import TRAIN_MAX_WORK, TRAIN_POINTS, TrainParams
from core.params import InvalidParams, Params, ladder_values
from core.runner import ExperimentError, execute
from tests.params_strategies import query_id, run_cpu

CPU = torch.device("cpu")  # the seeded comparisons use CPU generators


# --------------------------------------------------------------------------------------------
# fans and gains


FANS_CASES = [
    FansParams(),  # the seeds' Conv2d(2, 10, kernel_size=(3, 5)): fans 30 and 150
    FansParams(layer="linear"),  # the seeds' Linear(3, 5): fans 3 and 5
    FansParams(layer="linear", in_features=2048, out_features=1, slope=0.2),
    FansParams(in_channels=256, out_channels=1, kernel_h=7, kernel_w=1, slope=1.0),
    FansParams(in_channels=1, out_channels=256, kernel_h=1, kernel_w=1, slope=0.0),
]


@pytest.mark.parametrize("p", FANS_CASES, ids=query_id)
def test_fans_by_formula_equal_torchs(p: FansParams) -> None:
    r = run_cpu(init_fans.run, p)
    layer: nn.Module = (
        nn.Linear(p.in_features, p.out_features)
        if p.layer == "linear"
        else nn.Conv2d(p.in_channels, p.out_channels, (p.kernel_h, p.kernel_w))
    )
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    assert r.weight_shape == tuple(weight.shape)
    torch_fans = nn.init._calculate_fan_in_and_fan_out(weight)
    assert (r.fan_in, r.fan_out) == (r.torch_fan_in, r.torch_fan_out) == torch_fans
    if p.layer == "linear":
        assert (r.fan_in, r.fan_out, r.receptive_field) == (p.in_features, p.out_features, 1)
    else:
        kk = p.kernel_h * p.kernel_w
        assert (r.fan_in, r.fan_out, r.receptive_field) == (p.in_channels * kk, p.out_channels * kk, kk)
    if p == FansParams():
        assert (r.fan_in, r.fan_out) == (30, 150)


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 1.0])
def test_gain_table_equals_calculate_gain_and_the_formulas(slope: float) -> None:
    r = run_cpu(init_fans.run, FansParams(slope=slope))
    assert set(r.nonlinearities) == {
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "selu",
    }
    by_hand = {"tanh": 5 / 3, "relu": math.sqrt(2), "leaky_relu": math.sqrt(2 / (1 + slope**2)), "selu": 3 / 4}
    for name, gain, formula in zip(r.nonlinearities, r.gains, r.gain_formulas, strict=True):
        assert gain == nn.init.calculate_gain(name, slope)
        assert gain == pytest.approx(by_hand.get(name, 1.0), rel=1e-15)
        formulas = {
            "1": 1.0,
            "5/3": 5 / 3,
            "sqrt(2)": math.sqrt(2),
            "sqrt(2 / (1 + slope^2))": math.sqrt(2 / (1 + slope**2)),
            "3/4": 0.75,
        }
        assert formulas[formula] == pytest.approx(gain, rel=1e-15)


# --------------------------------------------------------------------------------------------
# signal: variance ratios per layer


def var_ratios(std: np.ndarray) -> np.ndarray:
    return np.asarray((std[1:] / std[:-1]) ** 2)


@pytest.mark.parametrize(
    ("activation", "scheme", "ratio"),
    [
        ("relu", "xavier_normal", 0.5),
        ("relu", "xavier_uniform", 0.5),
        ("relu", "kaiming_normal", 1.0),
        ("relu", "kaiming_uniform", 1.0),
        ("linear", "xavier_uniform", 1.0),
        ("linear", "xavier_normal", 1.0),
        ("leaky_relu", "kaiming_normal", 1.0),
        ("linear", "normal_0.01", 256 * 1e-4),
        ("relu", "normal_1", 128.0),
        ("linear", "standard", 1 / 3),  # Glorot & Bengio's "standard" U(-1/sqrt(n), 1/sqrt(n)): Var(w) = 1/(3n)
        ("relu", "standard", 1 / 6),
    ],
)
def test_variance_ratio_per_layer_matches_theory(activation: str, scheme: str, ratio: float) -> None:
    # Width 256 fixed (fan_in = fan_out): Xavier's Var(w) = 1/256, so ReLU halves Var(z) per layer.
    for seed in (0, 1):
        p = SignalParams(
            depth=12,
            width=256,
            batch=256,
            activation=activation,
            scheme=scheme,
            activation2="linear",
            scheme2="xavier_normal",
            seed=seed,
            seeds=1,
        )
        run_ = run_cpu(init_signal.run, p).runs[0]
        assert run_.theory is not None and run_.theory.ratio == pytest.approx(ratio)
        forward, backward = var_ratios(run_.pre_std), var_ratios(run_.delta_std[::-1])
        # Finite width: each layer's ratio scatters by about sqrt(2/width); the average over 11 layers is tight.
        assert forward.mean() == pytest.approx(ratio, rel=0.08)
        assert backward.mean() == pytest.approx(ratio, rel=0.08)
        assert run_.forward_ratio == pytest.approx(np.exp(np.log(forward).mean()), rel=1e-9)
        assert run_.backward_ratio == pytest.approx(np.exp(np.log(backward).mean()), rel=1e-9)


def test_signal_theory_curves_against_the_derivation_written_here() -> None:
    depth, width, batch = 9, 128, 64
    for activation, c, mean in (
        ("relu", 0.5, 1 / math.sqrt(2 * math.pi)),
        ("linear", 1.0, 0.0),
        ("leaky_relu", (1 + 0.01**2) / 2, 0.99 / math.sqrt(2 * math.pi)),
    ):
        for scheme in SIGNAL_SCHEMES:
            gain = {"relu": math.sqrt(2), "linear": 1.0, "leaky_relu": math.sqrt(2 / (1 + 0.01**2))}[activation]
            var_w = {"xavier": 1 / width, "kaiming": gain**2 / width, "standard": 1 / (3 * width)}.get(scheme.split("_")[0])
            var_w = var_w if var_w is not None else (1e-4 if scheme == "normal_0.01" else 1.0)
            t = init_signal.signal_theory(activation, scheme, depth, width, batch)
            assert t is not None
            v, d2 = 1.0, c  # E[h_0^2] = E[x^2] = 1; E[delta_L^2] = E[R^2 act'^2] = c
            for layer in range(1, depth + 1):
                var_z = width * var_w * v
                assert t.pre_std[layer - 1] == pytest.approx(math.sqrt(var_z), rel=1e-12)
                assert t.act_std[layer - 1] == pytest.approx(math.sqrt(var_z * (c - mean**2)), rel=1e-12)
                v = c * var_z
            for layer in range(depth, 0, -1):
                assert t.delta_std[layer - 1] == pytest.approx(math.sqrt(d2), rel=1e-12)
                d2 *= width * var_w * c
    assert init_signal.signal_theory("tanh", "xavier_normal", depth, width, batch) is None


def test_signal_measurements_against_theory_layer_by_layer() -> None:
    p = SignalParams(
        depth=8,
        width=512,
        batch=256,
        activation="relu",
        scheme="kaiming_normal",
        activation2="linear",
        scheme2="xavier_uniform",
        seed=3,
    )
    steps = np.arange(1, p.depth + 1)
    for run_ in run_cpu(init_signal.run, p).runs:
        t = run_.theory
        assert t is not None
        # The scale drifts like a random walk, about sqrt(2/width) per layer: forward from the input,
        # backward from the output.
        forward_tol, backward_tol = 0.03 + 0.05 * np.sqrt(steps), 0.03 + 0.05 * np.sqrt(steps[::-1])
        assert np.all(np.abs(np.log(run_.pre_std / t.pre_std)) <= forward_tol), (run_.pre_std, t.pre_std)
        assert np.all(np.abs(np.log(run_.act_std / t.act_std)) <= forward_tol), (run_.act_std, t.act_std)
        assert np.all(np.abs(np.log(run_.delta_std / t.delta_std)) <= backward_tol), (run_.delta_std, t.delta_std)
        assert np.all(np.abs(np.log(run_.grad_std / t.grad_std)) <= 0.3)  # the same at every layer


def test_xavier_relu_vanishes_and_normal_1_explodes() -> None:
    r = run_cpu(init_signal.run, SignalParams(depth=20, activation="relu", scheme="xavier_normal", scheme2="normal_1", seed=5))
    vanish, explode = r.runs
    assert vanish.act_std[-1] < 1e-2 * vanish.act_std[0]
    assert explode.act_std[-1] > 1e18 * explode.act_std[0]  # sqrt(128)^19 = 1e20
    assert r.hist_layers.tolist() == [1, 5, 10, 15, 20]
    for run_ in r.runs:
        assert run_.hist_counts.shape == (5, BINS)
        np.testing.assert_array_equal(run_.hist_counts.sum(axis=1) + run_.hist_outside, np.full(5, 128 * 256))


def test_standard_init_is_uniform_within_one_over_sqrt_fan_in_as_nn_linears_default() -> None:
    # Glorot & Bengio (2010), eq. 1: W ~ U(-1/sqrt(n), 1/sqrt(n)) with n the size of the previous layer.
    g = torch.Generator().manual_seed(0)
    w = init_common.init_weight(torch.empty(300, 400), "standard", "tanh", g)
    bound = 1 / math.sqrt(400)
    assert -bound <= w.min().item() < -0.99 * bound and 0.99 * bound < w.max().item() <= bound
    assert w.std().item() == pytest.approx(init_common.weight_std("standard", "tanh", 400, 300), rel=0.01)
    assert init_common.weight_std("standard", "relu", 400, 300) == pytest.approx(bound / math.sqrt(3), rel=1e-12)
    # nn.Linear's default init (kaiming_uniform_ with a=sqrt(5)) draws from exactly this range.
    torch.manual_seed(0)
    linear = nn.Linear(400, 300)
    assert linear.weight.abs().max().item() <= bound and linear.weight.abs().max().item() > 0.99 * bound
    # The script's call is the same draw.
    call = init_common.init_call("standard", "tanh")
    g = torch.Generator().manual_seed(0)
    again = eval("lambda w: " + call, {"nn": nn, "g": g})(torch.empty(300, 400))  # our own text, not user input
    torch.testing.assert_close(again, w, rtol=0, atol=0)


def test_glorot_bengio_tanh_standard_vanishes_where_xavier_uniform_holds() -> None:
    # Their Figure 6/7 contrast: tanh near 0 is linear, so "standard" (Var(w) = 1/(3n)) multiplies the
    # variance by about 1/3 per layer, forward and backward; the normalized init (xavier_uniform, 1/n
    # for square layers) keeps the factor near 1, below it only by tanh's curvature.
    p = SignalParams(activation="tanh", scheme="standard", activation2="tanh", scheme2="xavier_uniform", seeds=2, seed=1)
    standard, xavier = run_cpu(init_signal.run, p).runs
    assert standard.forward_ratio == pytest.approx(1 / 3, rel=0.08)
    assert standard.backward_ratio == pytest.approx(1 / 3, rel=0.08)
    assert xavier.forward_ratio is not None and 0.7 < xavier.forward_ratio < 1.0
    for net in range(2):
        assert standard.act_std_seeds[net, -1] < 1e-4 * standard.act_std_seeds[net, 0]  # (1/3)^(19/2) = 3e-5
        assert xavier.act_std_seeds[net, -1] > 0.1 * xavier.act_std_seeds[net, 0]
        # The weight gradients: the same at every layer in the linear regime, and (1/3)^19 times smaller in variance.
        assert np.all(standard.grad_std_seeds[net] < 1e-3 * xavier.grad_std_seeds[net])


def test_the_band_holds_every_network_and_its_first_is_the_one_drawn_alone() -> None:
    p = SignalParams(depth=6, width=32, batch=16, seeds=4, seed=9)
    r = run_cpu(init_signal.run, p)
    alone = run_cpu(init_signal.run, dataclasses.replace(p, seeds=1))
    for run_, single in zip(r.runs, alone.runs, strict=True):
        assert run_.act_std_seeds.shape == run_.grad_std_seeds.shape == (4, 6)
        np.testing.assert_array_equal(run_.act_std_seeds[0], run_.act_std)
        np.testing.assert_array_equal(run_.grad_std_seeds[0], run_.grad_std)
        np.testing.assert_array_equal(run_.act_std, single.act_std)  # more networks do not change the first
        np.testing.assert_array_equal(single.act_std_seeds, single.act_std[None, :])
        assert len({tuple(row) for row in run_.act_std_seeds.tolist()}) == 4  # each network is a new draw
    # Network k is the generator's k-th draw of input, read-out and weights, rebuilt here.
    g = torch.Generator().manual_seed(p.seed)
    for k in range(p.seeds):
        X, R = torch.randn(p.batch, p.width, generator=g), torch.randn(p.batch, p.width, generator=g)
        state = g.get_state()
        for i, (activation, scheme) in enumerate(((p.activation, p.scheme), (p.activation2, p.scheme2))):
            g.set_state(state)
            h = X
            stds = []
            for _ in range(p.depth):
                w = init_common.init_weight(torch.empty(p.width, p.width), scheme, activation, g)
                h = init_signal.ACTIVATION_FNS[activation](h @ w.T)
                stds.append(h.std(correction=0).item())
            np.testing.assert_allclose(r.runs[i].act_std_seeds[k], stds, rtol=1e-6)
        del R


def test_one_relu_kaiming_network_at_width_256_can_look_like_decay_the_band_says_otherwise() -> None:
    # Finite width: each network's variance takes a random walk around the kept scale. The first network
    # of the default page (seed 0) ends 20 layers at about half its starting std, yet the band of the
    # default three networks straddles the theory ratio of 1.
    r = run_cpu(init_signal.run, SignalParams())
    assert r.runs[1].act_std_seeds.shape[0] == SignalParams().seeds == 3
    kaiming = r.runs[1]
    assert kaiming.scheme == "kaiming_normal" and kaiming.theory is not None
    assert kaiming.theory.act_std[-1] / kaiming.theory.act_std[0] == pytest.approx(1.0, rel=1e-12)
    end_over_start = kaiming.act_std_seeds[:, -1] / kaiming.act_std_seeds[:, 0]
    assert end_over_start[0] < 0.6
    assert end_over_start.min() < 1.0 < end_over_start.max()


def test_signal_histogram_layers() -> None:
    assert init_signal.hist_layers(1) == [1]
    assert init_signal.hist_layers(2) == [1, 2]
    assert init_signal.hist_layers(100) == [1, 25, 50, 75, 100]


def test_the_widest_deepest_network_is_refused_by_the_budget() -> None:
    p = SignalParams(depth=100, width=2048, batch=512)
    with pytest.raises(ExperimentError) as e:
        run_cpu(init_signal.run, p)
    assert e.value.key == "budget" and e.value.info["max_mb"] == 512
    weights = 100 * 2048 * 2048 * 4
    assert e.value.info["needed_mb"] >= 2 * weights / 2**20  # the weights and their gradients, at least
    assert e.value.info["needed_mb"] == round(p.estimate_bytes() / 2**20, 1)


# --------------------------------------------------------------------------------------------
# train


def test_training_curves_show_the_inits_consequence() -> None:
    r = run_cpu(init_train.run, TrainParams())
    assert r.schemes == ("normal_0.01", "xavier_uniform", "kaiming_normal")
    assert r.loss.shape == (3, 300) and r.steps.tolist() == list(range(1, 301))
    assert r.X.shape == (TRAIN_POINTS, 2) and sorted(set(r.y.tolist())) == [0.0, 1.0]
    tiny, xavier, kaiming = r.loss
    # Tiny weights: every logit is about 0, so the loss starts at ln 2 (and the signal vanishes: it stays there).
    assert tiny[0] == pytest.approx(math.log(2), abs=1e-4)
    assert tiny[-1] == pytest.approx(math.log(2), abs=0.01)
    # Kaiming keeps relu's signal: it learns the spirals about 50 steps before Xavier, which halves it per layer.
    first_below = [int(np.argmax(curve < 0.1)) if (curve < 0.1).any() else len(curve) for curve in r.loss]
    assert first_below[0] == 300 and first_below[2] + 30 < first_below[1] < 300
    assert kaiming[-1] < xavier[-1] < 0.01
    assert r.accuracy[2] == 1.0 and not r.diverged.any()


def test_initial_loss_is_the_cross_entropy_of_the_initial_net_computed_here() -> None:
    p = TrainParams(depth=2, width=16, steps=50, schemes=("normal_1",), activation="tanh", seed=4)
    r = run_cpu(init_train.run, p)
    g = torch.Generator().manual_seed(p.seed)
    X, y = init_train.spirals(TRAIN_POINTS, g, CPU)
    h = X
    weights = [torch.randn(16, 2, generator=g), torch.randn(16, 16, generator=g), torch.randn(1, 16, generator=g)]
    for i, w in enumerate(weights):
        h = h @ w.T
        if i < 2:
            h = torch.tanh(h)
    logits = h.squeeze(1).double()
    bce = (torch.clamp(logits, min=0) - logits * y.double() + torch.log1p(torch.exp(-logits.abs()))).mean().item()
    assert r.loss[0, 0] == pytest.approx(bce, rel=1e-5)


def test_each_init_starts_from_the_same_random_numbers() -> None:
    # Training: one scheme alone gives the same curve as in company (the page runs them one by one).
    p = TrainParams(depth=2, width=16, steps=50, schemes=("xavier_normal", "normal_1", "kaiming_uniform"), seed=3)
    together = run_cpu(init_train.run, p)
    for k, scheme in enumerate(p.schemes):
        alone = run_cpu(init_train.run, dataclasses.replace(p, schemes=(scheme,)))
        np.testing.assert_array_equal(alone.loss[0], together.loss[k])
        np.testing.assert_array_equal(alone.X, together.X)
    # Signal: Kaiming's weights are Xavier's times sqrt(2) (width fixed), and relu(c z) = c relu(z),
    # so every activation is exactly sqrt(2)^layer larger.
    s = run_cpu(init_signal.run, SignalParams(depth=10, width=64, batch=32, scheme="xavier_normal", scheme2="kaiming_normal"))
    xavier, kaiming = s.runs
    np.testing.assert_allclose(kaiming.act_std / xavier.act_std, math.sqrt(2) ** s.layers, rtol=1e-5)


def test_train_refuses_too_much_work() -> None:
    p = TrainParams(depth=10, width=256, steps=2000, schemes=SIGNAL_SCHEMES)
    with pytest.raises(InvalidParams) as e:
        p.validate()
    assert (e.value.field, e.value.key) == ("steps", "too_much_work")
    assert dataclasses.replace(p, steps=e.value.info["max"]).work() <= TRAIN_MAX_WORK
    assert e.value.info["max"] == p.max_steps() and dataclasses.replace(p, steps=p.max_steps() + 1).work() > TRAIN_MAX_WORK
    with pytest.raises(InvalidParams) as e:
        TrainParams(schemes=()).validate()
    assert e.value.key == "empty"
    assert "momentum" not in TrainParams(optimizer="adam").roles() and "momentum" in TrainParams().roles()


def test_a_link_asking_for_too_many_steps_brings_them_down_and_keeps_the_rest() -> None:
    query = {"tab": "train", "train.depth": "10", "train.width": "256", "train.steps": "2000", "train.seed": "7"}
    p, rejected = TrainParams.from_query(query, "train")
    assert [(r.field, r.key) for r in rejected] == [("steps", "too_much_work")]  # one warning
    assert (p.depth, p.width, p.seed, p.schemes) == (10, 256, 7, TrainParams().schemes)
    assert p.steps == p.max_steps() == 149  # 3.5e8 // (3 schemes * (10 * 256^2 + 64 * 256 + 11 * 10_000))
    p.validate()


def test_ladders_offer_powers_of_two_and_1_2_5_steps_and_links_may_carry_any_value_between() -> None:
    def stops(cls: type[Params], name: str) -> tuple[float, ...]:
        return tuple(next(s for s in cls.specs() if s.name == name).meta["ladder"])

    assert stops(SignalParams, "width") == (8, 16, 32, 64, 128, 256, 512, 1024, 2048)
    assert stops(SignalParams, "batch")[:3] == (1, 2, 4) and stops(SignalParams, "batch")[-1] == 2048
    assert stops(TrainParams, "width") == (16, 32, 64, 128, 256)
    assert stops(TrainParams, "lr") == ladder_values(0.0001, 1.0, "125")
    assert stops(TrainParams, "lr")[:4] == (0.0001, 0.0002, 0.0005, 0.001) and 0.1 in stops(TrainParams, "lr")
    assert stops(DistParams, "in_features")[-1] == 2048 and stops(DistParams, "in_channels")[-1] == 256
    for p in (SignalParams(), TrainParams(), DistParams()):  # every default is a stop
        for spec in p.specs():
            if "ladder" in spec.meta:
                assert getattr(p, spec.name) in spec.meta["ladder"], spec.name
    p, rejected = SignalParams.from_query({"signal.width": "300", "signal.batch": "100"}, "signal")
    assert rejected == [] and (p.width, p.batch) == (300, 100)
    p, rejected = TrainParams.from_query({"train.lr": "0.03"}, "train")
    assert rejected == [] and p.lr == 0.03


def test_every_numeric_field_is_a_slider_except_seeds_and_exact_sizes() -> None:
    boxes = {
        (cls.__name__, s.name)
        for cls in (DistParams, FansParams, SignalParams, TrainParams)
        for s in cls.specs()
        if s.meta.get("seed") or s.meta.get("exact")
    }
    assert boxes == {
        ("DistParams", "seed"),
        ("SignalParams", "seed"),
        ("TrainParams", "seed"),
        ("FansParams", "in_features"),
        ("FansParams", "out_features"),
    }
    for cls in (DistParams, SignalParams, TrainParams):
        seed = next(s for s in cls.specs() if s.name == "seed")
        assert (seed.meta["lo"], seed.meta["hi"]) == (0, 2**31 - 1)


# --------------------------------------------------------------------------------------------
# predictions: each answer is the theory value at the question's settings


def answer(prediction: Prediction[Any, Any]) -> str:
    """Return the prediction's answer, computed by running its experiment on the CPU."""
    return prediction.answer(execute(prediction.experiment.run, prediction.params, device=CPU))


def test_fan_in_of_conv2d_16_32_3_is_144() -> None:
    assert answer(init_fans.FAN_IN) == str(16 * 3 * 3) == "144"
    assert set(init_fans.FAN_IN.options) >= {"16", "48", "144", "288"}


def test_relu_with_xavier_shrinks_the_signal() -> None:
    # Variance ratio 1/2 per layer: after 19 layers the std is 2^-9.5 of layer 1's, about 1/700, below 1/10.
    p = init_signal.RELU_XAVIER.params
    assert (p.activation, p.scheme, p.depth, p.width) == ("relu", "xavier_normal", 20, 256)
    theory = init_signal.signal_theory(p.activation, p.scheme, p.depth, p.width, p.batch)
    assert theory is not None and theory.act_std[-1] / theory.act_std[0] == pytest.approx(2**-9.5)
    assert answer(init_signal.RELU_XAVIER) == "shrinks"


def test_the_seed_changes_the_random_experiments() -> None:
    assert run_cpu(init_dist.run, DistParams(seed=1)).mean != run_cpu(init_dist.run, DistParams(seed=2)).mean
    a = run_cpu(init_signal.run, SignalParams(depth=3, width=16, batch=8, seed=1))
    b = run_cpu(init_signal.run, SignalParams(depth=3, width=16, batch=8, seed=2))
    assert not np.array_equal(a.runs[0].pre_std, b.runs[0].pre_std)


def test_tanh_standard_prediction_shrinks_and_xavier_uniform_beside_it_does_not() -> None:
    prediction = init_signal.TANH_STANDARD
    r = run_cpu(init_signal.run, prediction.params)
    assert prediction.answer(r) == "shrinks"
    standard, xavier = r.runs
    assert standard.scheme == "standard" and xavier.scheme == "xavier_uniform"
    assert standard.act_std[-1] / standard.act_std[0] == pytest.approx(3**-9.5, rel=0.5)
    assert 0.1 < xavier.act_std[-1] / xavier.act_std[0] < 1
