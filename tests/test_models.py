import pytest
import torch
from torch import nn

from phasezoo.errors import SpecError
from phasezoo.models import build_model
from phasezoo.models.utils import batched_outputs, eval_mode


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("arch,reference", [("resnet18", 11_173_962), ("resnet50", 23_520_842)])
def test_width_64_matches_the_standard_cifar_resnet(arch, reference):
    # The CIFAR ResNet-18/50 (3x3 stem, no max-pool, 10 classes) have exactly these counts.
    assert n_params(build_model(arch, width=64, in_channels=3, num_classes=10)) == reference


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_parameter_count_scales_quadratically_with_width(arch):
    counts = [n_params(build_model(arch, width=w, in_channels=3, num_classes=10)) for w in (8, 16, 32)]
    # conv weights dominate and scale with width^2; the ratio tends to 4 from below
    assert 3.8 < counts[1] / counts[0] < 4.0
    assert 3.9 < counts[2] / counts[1] < 4.0


@pytest.mark.parametrize("arch,feat", [("resnet18", 8), ("resnet50", 32)])
def test_stages_and_outputs(arch, feat):
    m = build_model(arch, width=4, in_channels=1, num_classes=7)
    x = torch.randn(3, 1, 8, 8)
    assert m(x).shape == (3, 7)
    assert m.features(x).shape == (3, feat * 4)  # last stage has 8w (x4 for bottlenecks) channels
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert not any(isinstance(mod, torch.nn.MaxPool2d) for mod in m.modules())
    widths = [m.layer1[0].bn1.num_features, m.layer2[0].bn1.num_features,
              m.layer3[0].bn1.num_features, m.layer4[0].bn1.num_features]
    assert widths == [4, 8, 16, 32]


def test_input_channels_and_image_size():
    m = build_model("resnet18", width=2, in_channels=3, num_classes=200)
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 200)


def test_kaiming_uniform_bounds():
    torch.manual_seed(0)
    m = build_model("resnet18", width=16, in_channels=3, num_classes=10)
    w = m.layer2[0].conv2.weight  # fan_in = 32 * 3 * 3
    bound = (2.0 ** 0.5) * (3.0 / (32 * 9)) ** 0.5
    assert w.abs().max() <= bound + 1e-6
    assert w.abs().max() > 0.95 * bound  # uniform fills the interval
    assert torch.all(m.bn1.weight == 1) and torch.all(m.bn1.bias == 0)
    assert torch.all(m.linear.bias == 0)


def test_bad_arch_and_width():
    with pytest.raises(SpecError, match="unknown architecture"):
        build_model("vgg", width=4, in_channels=3, num_classes=10)
    with pytest.raises(SpecError, match="width"):
        build_model("resnet18", width=0, in_channels=3, num_classes=10)


# --------------------------------------------------------------------------- models.utils


def test_batched_outputs_eval_mode_no_grad_and_restores_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    model.train()
    x = torch.randn(50, 4)
    before = model[1].running_mean.clone()
    out = batched_outputs(model, x, batch_size=7)
    assert model.training  # restored
    assert torch.equal(model[1].running_mean, before)  # eval mode: no statistics updated
    assert not out.requires_grad and out.shape == (50, 3)
    model.eval()
    assert torch.allclose(out, model(x), atol=1e-6)  # batch size does not change values


def test_eval_mode_restores_the_mode_on_errors():
    model = nn.Linear(2, 2).train()
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            assert not model.training
            raise RuntimeError("boom")
    assert model.training
