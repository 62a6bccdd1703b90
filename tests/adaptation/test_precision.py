"""16-bit training emulated on the host: what the device stores is rounded, fp32 is untouched."""

import copy
import pytest
import torch

from biotrain.adaptation import FinetuneConfig, adapt
from biotrain.adaptation.batched import adapt_many
from biotrain.adaptation.precision import check_precision, emulated, rounded, underflow
from biotrain.adaptation.training import as_tensor
from tests.adaptation.cases import data, model

pytestmark = pytest.mark.usefixtures("one_thread")


def _representable(t: torch.Tensor, precision: str) -> bool:
    return torch.equal(t, rounded(t, precision))


def test_rounding_is_the_16_bit_types_own():
    x = torch.tensor([1.0 + 2 ** -9, 1.0 + 2 ** -12, 2e-8, 7e4])
    assert rounded(x, "bf16").tolist()[:2] == [1.0, 1.0]  # 8 significant bits
    assert rounded(x, "fp16")[0] == 1.0 + 2 ** -9 and rounded(x, "fp16")[1] == 1.0  # 11 significant bits
    assert rounded(x, "fp16")[2] == 0 and rounded(x, "bf16")[2] != 0  # fp16's range ends at 6e-8
    assert torch.isinf(rounded(x, "fp16")[3]) and torch.isfinite(rounded(x, "bf16")[3])
    assert torch.equal(rounded(x, "fp32"), x)
    with pytest.raises(ValueError, match=r"precision 'fp8'.*'fp32', 'bf16', 'fp16'"):
        check_precision("fp8")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("strategy,norm", [("full", "batch"), ("edge", "group")])
def test_every_stored_value_is_16_bit_after_training(precision, strategy, norm):
    X, y = data("epidenet", 16)
    m = model("epidenet", norm)
    start = copy.deepcopy(m)
    adapt(m, X, y, strategy, FinetuneConfig(epochs=2, precision=precision), seed=0)
    for name, t in list(m.named_parameters()) + list(m.named_buffers()):
        if t.is_floating_point():
            assert _representable(t.detach(), precision), name
    fp32 = copy.deepcopy(start)
    adapt(fp32, X, y, strategy, FinetuneConfig(epochs=2), seed=0)
    w16, w32 = m.classifier.weight.detach(), fp32.classifier.weight.detach()
    rel = ((w16 - w32).norm() / w32.norm()).item()
    assert 0 < rel < 0.05  # the same training, 16-bit storage: close, not equal
    assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in m.modules())  # the emulation is gone


def test_fp32_is_the_plain_loop_bit_for_bit():
    X, y = data("epidenet", 16)
    a, b = model("epidenet", "batch"), model("epidenet", "batch")
    adapt(a, X, y, "full", FinetuneConfig(epochs=2), seed=0)
    adapt(b, X, y, "full", FinetuneConfig(epochs=2, precision="fp32"), seed=0)
    assert all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))


def test_activations_and_their_gradients_are_stored_in_16_bits():
    X, _ = data("epidenet", 4)
    m = model("epidenet", "group")
    seen = []
    with emulated(m, "bf16"):
        # registered after the emulation's hooks: sees what the next layer loads
        h = m.block2.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        x = as_tensor(X).requires_grad_(True)
        out = m(x)
        out.sum().backward()
        h.remove()
    assert _representable(out.detach(), "bf16") and _representable(seen[0].detach(), "bf16")
    assert _representable(x.grad, "bf16")  # the input's gradient came back through 16-bit stores
    assert not _representable(m(as_tensor(X)).detach(), "bf16")  # outside the block: fp32 again


def test_fp16_loss_scaling_saves_small_gradients():
    g = {"small": torch.full((100,), 1e-8), "large": torch.full((100,), 1e-2)}
    assert underflow(g, "fp16") == {"small": 1.0, "large": 0.0}
    assert underflow(g, "fp16", scale=1024.0) == {"small": 0.0, "large": 0.0}
    assert underflow(g, "bf16") == {"small": 0.0, "large": 0.0}


@pytest.mark.parametrize("strategy", ["edge", "lora"])
def test_stacked_groups_emulate_as_each_task_alone(strategy):
    norm = "group" if strategy == "edge" else "batch"
    Xs, ys = zip(*(data("epidenet", 16, seed=k) for k in range(3)))
    cfg = FinetuneConfig(epochs=2, precision="bf16")
    alone = [model("epidenet", norm, seed=k) for k in range(3)]
    together = [copy.deepcopy(m) for m in alone]
    for m, X, y, s in zip(alone, Xs, ys, range(3)):
        adapt(m, X, y, strategy, cfg, s)
    adapt_many(together, list(Xs), list(ys), strategy, cfg, [0, 1, 2], force=True)
    for a, b in zip(alone, together):
        for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
            if wa.is_floating_point():
                assert _representable(wb, "bf16"), name
                # summation order can flip a rounding: within a few bf16 steps, not more
                assert ((wb - wa).norm() / wa.norm().clamp_min(1e-30)).item() < 2e-2, name
        assert all(_representable(w, "bf16") for w in a.state_dict().values() if w.is_floating_point())
