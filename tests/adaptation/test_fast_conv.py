"""Long depthwise convolutions with forward-convolution gradients: same forward, same
gradients up to float summation order, swapped only inside the ``with`` block."""

import copy

import pytest
import torch
from torch import nn

from biotrain.adaptation import FinetuneConfig, adapt
from biotrain.adaptation.fast_conv import MIN_KERNEL, eligible, fast_temporal_convs
from tests.adaptation.cases import data as _data, model as _model, rel as _rel


pytestmark = pytest.mark.usefixtures("one_thread")  # as every adaptation task runs


@pytest.mark.parametrize("batch,channels,rows,width,kernel", [(8, 32, 1, 463, 64), (3, 5, 2, 100, 33), (1, 4, 1, 40, 40)])
def test_forward_is_the_layers_own_and_gradients_match_pytorch(batch, channels, rows, width, kernel):
    conv = nn.Conv2d(channels, channels, (1, kernel), groups=channels, bias=False)
    assert eligible(conv)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, rows, width, generator=gen)
    upstream = torch.randn(batch, channels, rows, width - kernel + 1, generator=gen)
    grads = {}
    for mode in ("pytorch", "fast", "float64"):
        layer = copy.deepcopy(conv).double() if mode == "float64" else copy.deepcopy(conv)
        xi = (x.double() if mode == "float64" else x).clone().requires_grad_()
        if mode == "fast":
            with fast_temporal_convs(layer) as swapped:
                out = layer(xi)
            assert swapped == 1
        else:
            out = layer(xi)
        out.backward(upstream.to(out.dtype))
        grads[mode] = (out.detach(), xi.grad, layer.weight.grad)
    assert torch.equal(grads["fast"][0], grads["pytorch"][0])  # the same forward, bit for bit
    for i in (1, 2):  # input and weight gradients
        assert _rel(grads["fast"][i], grads["pytorch"][i]) <= 1e-6
        assert _rel(grads["fast"][i].double(), grads["float64"][i]) <= 1e-6  # rounding, not another gradient


def test_only_long_depthwise_kernels_are_swapped_and_the_model_is_restored():
    eeg, eog = _model("mi_bminet", "batch"), _model("epidenet", "batch")
    assert [n for n, m in eeg.named_modules() if eligible(m)] == ["temporal"]  # 64 samples; depthwise has 8
    assert not any(eligible(m) for m in eog.modules())  # dense convolutions: slower this way
    assert not eligible(nn.Conv2d(4, 4, (1, MIN_KERNEL - 1), groups=4, bias=False))
    assert not eligible(nn.Conv2d(4, 4, (1, MIN_KERNEL), groups=4, bias=True))
    assert not eligible(nn.Conv2d(4, 4, (1, MIN_KERNEL), groups=4, bias=False, padding=(0, 3)))
    assert not eligible(nn.Conv2d(4, 8, (1, MIN_KERNEL), groups=4, bias=False))  # depth multiplier 2
    before = copy.deepcopy(eeg.state_dict())
    with pytest.raises(RuntimeError, match="inside"):
        with fast_temporal_convs(eeg):
            assert "forward" in vars(eeg.temporal)
            raise RuntimeError("inside")
    assert "forward" not in vars(eeg.temporal)  # the class's forward again, even after an error
    assert all(torch.equal(before[k], v) for k, v in eeg.state_dict().items())


def test_full_step_gradients_match_the_reference_step():
    """MI-BMINet, BatchNorm with batch statistics. ``norm1.weight`` is left out of the per-tensor
    bound: the next BatchNorm normalises its scale away, so its gradient is ~1e-6 of the others'
    (rounding of a zero) and a relative bound on it says nothing; the whole-model bound covers it."""
    model = _model("mi_bminet", "batch").train()
    X, y = _data("mi_bminet", 8)
    xs, ys = torch.from_numpy(X).unsqueeze(1), torch.from_numpy(y)
    loss_fn = nn.CrossEntropyLoss()
    grads = {}
    for mode in ("reference", "fast"):
        m = copy.deepcopy(model)
        with fast_temporal_convs(m) if mode == "fast" else torch.enable_grad():
            loss_fn(m(xs), ys).backward()
        grads[mode] = {n: p.grad for n, p in m.named_parameters()}
    ref, fast = grads["reference"], grads["fast"]
    whole = _rel(torch.cat([fast[n].flatten() for n in ref]), torch.cat([ref[n].flatten() for n in ref]))
    assert whole <= 1e-6
    assert ref["norm1.weight"].norm() < 1e-4 * ref["temporal.weight"].norm()
    assert max(_rel(fast[n], ref[n]) for n in ref if n != "norm1.weight") <= 1e-5


def test_full_fast_loop_stays_close_to_the_reference_loop():
    X, y = _data("mi_bminet", 16)
    runs = {}
    for loop in ("reference", "fast"):
        model = _model("mi_bminet", "batch")
        adapt(model, X, y, "full", FinetuneConfig(epochs=2, host_loop=loop), seed=0)
        runs[loop] = model.state_dict()
    assert not torch.equal(runs["fast"]["temporal.weight"], runs["reference"]["temporal.weight"])  # the fast path ran
    for k, ref in runs["reference"].items():
        if ref.is_floating_point():
            assert _rel(runs["fast"][k], ref) <= 1e-5, k
