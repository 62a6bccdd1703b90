import inspect

import pytest
import torch
import yaml

from biotrain.models import BRIEF_SFREQ, MODELS, PIPELINE_ARGS, BiosignalModel, build_model
from biotrain.models.checkpoint import load_checkpoint, save_checkpoint
from tests.helpers import ROOT

# BRIEF section 3: reference shapes and parameter counts
REFERENCE = {"mi_bminet": ((8, 1900, 2), 7900), "epidenet": ((2, 1000, 11), 4100)}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("norm", ["batch", "group"])
def test_parameter_count_within_two_percent_of_brief(name, norm):
    (c, t, k), expected = REFERENCE[name]
    model = build_model(name, c, t, k, norm)
    assert abs(model.n_parameters() - expected) / expected <= 0.02


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("shape", [(3, 480, 4), (22, 1000, 2), (2, 777, 11)])
def test_any_input_shape_and_class_count(name, shape):
    c, t, k = shape
    model = build_model(name, c, t, k, "batch").eval()
    assert model(torch.randn(5, 1, c, t)).shape == (5, k)
    assert isinstance(model.classifier, torch.nn.Linear) and model.classifier.out_features == k


@pytest.mark.parametrize("name", sorted(MODELS))
def test_group_norm_model_treats_each_sample_alone(name):
    """What makes micro-batch 1 legal for ``edge``: a sample's output ignores its batch mates."""
    (c, t, k), _ = REFERENCE[name]
    torch.manual_seed(0)
    model = build_model(name, c, t // 2, k, "group").train()
    x = torch.randn(4, 1, c, t // 2)
    torch.testing.assert_close(model(x)[:1], model(x[:1]), rtol=1e-5, atol=1e-6)
    bn = build_model(name, c, t // 2, k, "batch").train()
    assert not torch.allclose(bn(x)[:2], bn(x[:2]), atol=1e-4)  # BatchNorm mixes the batch


def test_unknown_model_and_norm_are_named():
    with pytest.raises(ValueError, match="unknown model 'eegnet'"):
        build_model("eegnet", 8, 500, 2)
    with pytest.raises(ValueError, match="norm='layer'"):
        build_model("mi_bminet", 8, 500, 2, norm="layer")


def test_registry_is_complete():
    """Every model class is registered, described by BRIEF's reference, and takes the data's rate."""
    assert set(BiosignalModel.__subclasses__()) == set(MODELS.values())
    assert sorted(REFERENCE) == sorted(MODELS)
    for cls in MODELS.values():
        assert set(PIPELINE_ARGS) <= set(inspect.signature(cls.__init__).parameters)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_reports_its_rate_and_window(name):
    (c, _, k), _ = REFERENCE[name]
    model = build_model(name, c, 600, k, sfreq=250.0)
    assert (model.sfreq, model.n_times, model.window_s) == (250.0, 600, 2.4)
    assert build_model(name, c, 1000, k).sfreq == BRIEF_SFREQ  # BRIEF's reference shapes are at 500 Hz


def _eeg_model(path: str) -> tuple[float, dict]:
    """The EEG rate and MI-BMINet arguments a shipped parameters file gives."""
    params = yaml.safe_load((ROOT / path).read_text())
    return params["data"]["eeg"]["sfreq"], params["models"]["eeg"]["kwargs"]


@pytest.mark.parametrize("path,samples", [("params.yaml", (64, 8)), ("profiles/tiny.yaml", (32, 8))])
def test_shipped_kernels_in_seconds_keep_their_sample_counts(path, samples):
    """Kernels given in seconds build the very layers, and initial weights, of the former sample counts."""
    sfreq, kwargs = _eeg_model(path)
    nf, nf2 = samples
    torch.manual_seed(0)
    seconds = build_model("mi_bminet", 8, 400, 2, sfreq=sfreq, **kwargs)
    assert seconds.kernel_lengths == samples
    assert (seconds.temporal.kernel_size, seconds.depthwise.kernel_size) == ((1, nf), (1, nf2))
    torch.manual_seed(0)
    counts = build_model("mi_bminet", 8, 400, 2, sfreq=sfreq, **{**kwargs, "temporal_kernel_s": None,
                                                                   "depthwise_kernel_s": None, "Nf": nf, "Nf2": nf2})
    for (key, a), (_, b) in zip(seconds.state_dict().items(), counts.state_dict().items(), strict=True):
        assert torch.equal(a, b), key


def test_brief_kernels_by_default_and_one_way_to_give_them():
    assert build_model("mi_bminet", 8, 1900, 2).kernel_lengths == (128, 16)  # 0.256 s, 0.032 s at 500 Hz
    with pytest.raises(ValueError, match="temporal_kernel_s \\(seconds\\) or Nf \\(samples\\), not both"):
        build_model("mi_bminet", 8, 400, 2, sfreq=200.0, temporal_kernel_s=0.32, Nf=64)
    with pytest.raises(ValueError, match="depthwise_kernel_s=0.001 at 200 Hz is not a kernel of at least one sample"):
        build_model("mi_bminet", 8, 400, 2, sfreq=200.0, depthwise_kernel_s=0.001)


def test_checkpoint_rebuilds_the_model_at_its_rate(tmp_path):
    kwargs = {"temporal_kernel_s": 0.32, "depthwise_kernel_s": 0.04}
    model = build_model("mi_bminet", 8, 400, 2, "group", sfreq=200.0, **kwargs)
    save_checkpoint(tmp_path / "m.pt", model, "mi_bminet", {**kwargs, "sfreq": 200.0})
    loaded, spec = load_checkpoint(tmp_path / "m.pt")
    assert spec["sfreq"] == 200.0 and spec["kwargs"] == kwargs  # the rate is held once, beside the shape
    assert (loaded.sfreq, loaded.kernel_lengths, loaded.norm) == (200.0, (64, 8), "group")
    # a checkpoint written before models carried a rate: kernels in samples, rebuilt at BRIEF's 500 Hz
    old = build_model("mi_bminet", 8, 400, 2, Nf=64, Nf2=8)
    spec = {"name": "mi_bminet", "n_chans": 8, "n_times": 400, "n_outputs": 2, "norm": "batch",
            "kwargs": {"Nf": 64, "Nf2": 8}}
    torch.save({"spec": spec, "state": old.state_dict()}, tmp_path / "old.pt")
    rebuilt, _ = load_checkpoint(tmp_path / "old.pt")
    assert rebuilt.kernel_lengths == (64, 8) and rebuilt.sfreq == BRIEF_SFREQ


@pytest.mark.parametrize("name", sorted(MODELS))
def test_chain_applied_in_order_is_the_forward_pass(name):
    """The fine-tuning loop runs a model from any point of its chain (a frozen prefix cached)."""
    model = build_model(name, 3, 1000, 4, "batch").eval()
    x = out = torch.randn(2, 1, 3, 1000)
    for _, layer in model.chain():
        out = layer(out)
    assert torch.equal(out, model(x))
