import pytest
import torch

from biotrain.models import MODELS, build_model

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
