"""training/deconvnet.py: Zeiler & Fergus's tools."""

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from models import create_model
from training.deconvnet import (
    ReceptiveField,
    TopPatches,
    deconvnet,
    find_layer,
    project_through_branches,
    receptive_field,
    surrogate_receptive_field,
    top_patches,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum.*")  # its notes on requires_grad and ReLU hooks


def test_find_layer_by_dotted_name_and_refuses_others_listing_them() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)))
    assert find_layer(model, "1.1") is model[1][1]
    with pytest.raises(ValueError, match=r"no layer '1\.2'; did you mean 1\.1.*accepted: 0, 1, 1\.0, 1\.1$") as error:
        find_layer(model, "1.2")
    assert "\n" not in str(error.value)


def small_net() -> nn.Sequential:
    """conv (pad 1), ReLU, 2x2 max pool, conv, ReLU: 1x6x6 -> 2x6x6 -> 2x3x3 -> 3x2x2 (a seed that leaves every
    channel alive on the tests' data)."""
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 3, 2), nn.ReLU())


def transposed_filtering_by_hand(maps: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """Section 2.1's filtering with the transposed filters, one product at a time: each value of output map o at
    (y, x) adds value * weight[o, i, a, b] to input map i at (y + a, x + b) of the padded input."""
    outputs, inputs, height, width = weight.shape
    rows, cols = maps.shape[1] + height - 1, maps.shape[2] + width - 1
    padded = torch.zeros(inputs, rows, cols, dtype=maps.dtype)
    for o in range(outputs):
        for y in range(maps.shape[1]):
            for x in range(maps.shape[2]):
                for i in range(inputs):
                    for a in range(height):
                        for b in range(width):
                            padded[i, y + a, x + b] += maps[o, y, x] * weight[o, i, a, b]
    return padded[:, padding : rows - padding, padding : cols - padding]


def project_by_hand(net: nn.Sequential, image: torch.Tensor, unit: int) -> torch.Tensor:
    """Zeiler & Fergus's rule on small_net, written out: the forward pass with the 2x2 pool's switches found by
    hand, the strongest activation of ``unit`` alone, then rectify, filter with conv2's transposed filters,
    rectify, unpool to the switches, rectify, filter with conv1's transposed filters."""
    conv1, conv2 = net[0], net[3]
    with torch.no_grad():
        rectified = F.relu(F.conv2d(image[None], conv1.weight, conv1.bias, padding=1))[0]  # 2x6x6
        pooled, switches = torch.zeros(2, 3, 3), {}
        for c in range(2):
            for y in range(3):
                for x in range(3):
                    window = [
                        (rectified[c, 2 * y + a, 2 * x + b], (2 * y + a, 2 * x + b)) for a in (0, 1) for b in (0, 1)
                    ]
                    value, where = max(window, key=lambda pair: float(pair[0]))
                    pooled[c, y, x], switches[c, y, x] = value, where
        top = F.relu(F.conv2d(pooled[None], conv2.weight, conv2.bias))[0]  # 3x2x2
        signal = torch.zeros_like(top)
        y, x = divmod(int(top[unit].argmax()), top.shape[2])
        signal[unit, y, x] = top[unit, y, x]
        signal = transposed_filtering_by_hand(F.relu(signal), conv2.weight, padding=0)  # 2x3x3
        signal = F.relu(signal)
        unpooled = torch.zeros(2, 6, 6)
        for (c, y, x), (row, col) in switches.items():
            unpooled[c, row, col] = signal[c, y, x]
        return transposed_filtering_by_hand(F.relu(unpooled), conv1.weight, padding=1)  # 1x6x6


def test_projection_equals_the_rule_computed_by_hand() -> None:
    net, images = small_net(), torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    for unit in range(3):
        expected = torch.stack([project_by_hand(net, image, unit) for image in images])
        projected = deconvnet(net, images, "4", unit=unit)
        torch.testing.assert_close(projected, expected)
        assert projected.abs().sum() > 0
    # unit=None: each image's strongest channel
    with torch.no_grad():
        strongest = net(images).flatten(2).amax(dim=2).argmax(dim=1)
    expected = torch.stack(
        [project_by_hand(net, image, int(unit)) for image, unit in zip(images, strongest, strict=True)]
    )
    torch.testing.assert_close(deconvnet(net, images, "4"), expected)


def test_the_model_is_left_as_it_was() -> None:
    net, images = small_net().train(), torch.randn(2, 1, 6, 6)
    net[1].eval()
    before = {name: value.clone() for name, value in net.state_dict().items()}
    with torch.no_grad():
        outputs = net(images)
    deconvnet(net, images, "2")
    assert [module.training for module in net] == [True, False, True, True, True]
    assert all(torch.equal(before[name], value) for name, value in net.state_dict().items())
    with torch.no_grad():  # no hook is left: a left one would stop this pass at layer 2
        torch.testing.assert_close(net(images), outputs)


def test_zfnet_receptive_fields_of_layers_1_to_3() -> None:
    zfnet = create_model("zfnet", num_classes=10)
    field = {name: receptive_field(zfnet, f"features.{name}", (207, 207)) for name in ("conv1", "pool1", "conv2")}
    field |= {name: receptive_field(zfnet, f"features.{name}", (207, 207)) for name in ("norm2", "conv3", "act3")}
    # per axis, size' = size + (kernel - 1) * jump, start' = start - padding * jump, jump' = jump * stride
    # conv1 7x7 stride 2 pad 1:  size 1 + 6*1 = 7,    jump 1*2 = 2,    start 0 - 1*1 = -1
    assert field["conv1"] == ReceptiveField((7, 7), (2, 2), (-1, -1))
    # pool1 3x3 stride 2:        size 7 + 2*2 = 11,   jump 2*2 = 4,    start -1
    assert field["pool1"] == ReceptiveField((11, 11), (4, 4), (-1, -1))
    # conv2 5x5 stride 2 pad 0:  size 11 + 4*4 = 27,  jump 4*2 = 8,    start -1
    assert field["conv2"] == ReceptiveField((27, 27), (8, 8), (-1, -1))
    # pool2 3x3 stride 2:        size 27 + 2*8 = 43,  jump 8*2 = 16,   start -1; its normalisation changes nothing
    assert field["norm2"] == ReceptiveField((43, 43), (16, 16), (-1, -1))
    # conv3 3x3 stride 1 pad 1:  size 43 + 2*16 = 75, jump 16,         start -1 - 1*16 = -17; so is its ReLU's
    assert field["conv3"] == field["act3"] == ReceptiveField((75, 75), (16, 16), (-17, -17))
    assert field["conv3"].corner(2, 5) == (-17 + 2 * 16, -17 + 5 * 16)
    # the structural surrogate's gradients find the same fields without the arithmetic
    for name, expected in field.items():
        assert surrogate_receptive_field(zfnet, f"features.{name}", (207, 207)) == expected, name


def test_receptive_field_of_a_dilated_padded_toy() -> None:
    toy = nn.Sequential(
        nn.Conv2d(2, 3, (3, 1), dilation=(2, 1), padding=(2, 0)),  # rows: 5 wide (dilated), columns: 1
        nn.Tanh(),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(3, 4, 3, stride=(2, 1), dilation=3),  # 7 wide
    )
    # rows:    conv 3 dilation 2 pad 2: size 1 + 2*(3-1)*1 = 5,  jump 1,  start -2
    #          pool 3 stride 2 pad 1:   size 5 + 2*1 = 7,        jump 2,  start -2 - 1*1 = -3
    #          conv 3 dilation 3 s 2:   size 7 + 3*2*2 = 19,     jump 4,  start -3
    # columns: conv 1:                  size 1,                  jump 1,  start 0
    #          pool:                    size 1 + 2*1 = 3,        jump 2,  start -1
    #          conv 3 dilation 3 s 1:   size 3 + 3*2*2 = 15,     jump 2,  start -1
    assert receptive_field(toy, "3", (40, 40)) == ReceptiveField((19, 15), (4, 2), (-3, -1))
    assert surrogate_receptive_field(toy, "3", (40, 40)) == ReceptiveField((19, 15), (4, 2), (-3, -1))
    # after a flatten and a linear layer every unit sees the whole image
    vector = nn.Sequential(*toy, nn.Flatten(), nn.Linear(4 * 2 * 4, 5))  # 20x20 -> 20x20 -> 10x10 -> 2x4
    assert receptive_field(vector, "5", (20, 20)) == ReceptiveField((20, 20), (0, 0), (0, 0))
    assert surrogate_receptive_field(vector, "5", (20, 20)) == ReceptiveField((20, 20), (0, 0), (0, 0))


@pytest.mark.parametrize(
    ("name", "size", "layers"),
    [
        ("alexnet", 227, ("features.pool2", "features.conv5")),
        pytest.param("vgg11", 32, ("features.stage2", "features.stage4"), marks=pytest.mark.slow),  # 133M weights
        ("lenet5", 32, ("features.s2", "features.s4")),
        ("nin_cifar10", 32, ("features.pool1", "features.mlpconv3")),
    ],
)
def test_the_surrogate_field_is_the_chain_arithmetic_on_chains(name: str, size: int, layers: tuple[str, str]) -> None:
    model = create_model(name, num_classes=10)
    for layer in layers:
        assert surrogate_receptive_field(model, layer, (size, size)) == receptive_field(model, layer, (size, size))


class Residual(nn.Module):
    """x + path(x), the path the layers given."""

    def __init__(self, *path: nn.Module) -> None:
        super().__init__()
        self.path = nn.Sequential(*path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.path(x)


class InceptionLike(nn.Module):
    """The concatenation of a 1x1 conv, a 5x5 conv (padded by 2) and a 3x3 max pool (stride 1, padded) then 1x1."""

    def __init__(self) -> None:
        super().__init__()
        self.one = nn.Conv2d(2, 2, 1)
        self.five = nn.Conv2d(2, 2, 5, padding=2)
        self.pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(2, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.one(x), self.five(x), self.pool(x)], dim=1)


def test_surrogate_fields_of_branching_nets_by_hand() -> None:
    convs = [nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)]
    residual = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(), Residual(*convs))
    # conv 3 stride 2 pad 1: size 3, jump 2, start -1; the longer path of the sum, two 3x3 convs padded by 1 at
    # jump 2: size 3 + 2*2 + 2*2 = 11, start -1 - 1*2 - 1*2 = -5 (the shortcut alone would leave 3 and -1)
    assert receptive_field(residual, "2", (24, 24)) == ReceptiveField((11, 11), (2, 2), (-5, -5))
    assert receptive_field(residual, "0", (24, 24)) == ReceptiveField((3, 3), (2, 2), (-1, -1))
    # the union of the branches: 1x1 (1, start 0), 5x5 pad 2 (5, start -2), 3x3 pool pad 1 then 1x1 (3, start -1)
    concatenation = nn.Sequential(InceptionLike(), nn.ReLU())
    assert receptive_field(concatenation, "1", (12, 12)) == ReceptiveField((5, 5), (1, 1), (-2, -2))


def resnet18_fields_by_hand() -> dict[str, ReceptiveField]:
    """torchvision's ResNet-18 along its main path, per axis: size' = size + (kernel - 1) * jump, start' = start -
    padding * jump, jump' = jump * stride."""
    # conv1 7x7 stride 2 pad 3:   size 1 + 6*1 = 7,       jump 2,  start -3
    # maxpool 3x3 stride 2 pad 1: size 7 + 2*2 = 11,      jump 4,  start -3 - 1*2 = -5
    # layer1, 4 convs 3x3 pad 1:  size 11 + 4*(2*4) = 43, jump 4,  start -5 - 4*4 = -21
    # layer2, a 3x3 stride 2:     size 43 + 2*4 = 51,     jump 8,  start -21 - 4 = -25
    #         and 3 more:         size 51 + 3*(2*8) = 99,          start -25 - 3*8 = -49
    # layer3, stride 2 then 3:    size 99 + 2*8 + 3*(2*16) = 211,  jump 16, start -49 - 8 - 3*16 = -105
    # layer4, stride 2 then 3:    size 211 + 2*16 + 3*(2*32) = 435, jump 32, start -105 - 16 - 3*32 = -217
    sizes = {"layer1": (43, 4, -21), "layer2": (99, 8, -49), "layer3": (211, 16, -105), "layer4": (435, 32, -217)}
    return {layer: ReceptiveField((s, s), (j, j), (b, b)) for layer, (s, j, b) in sizes.items()}


def test_resnet18_fields_are_those_of_its_main_path() -> None:
    fields = resnet18_fields_by_hand()
    resnet = create_model("resnet18", num_classes=10)
    for layer in ("layer1", "layer2", "layer3"):
        assert receptive_field(resnet, layer, (32, 32)) == fields[layer], layer
    # a zero-initialised residual gamma does not cut the path through its block
    zero_gamma = create_model("resnet18", num_classes=10, zero_init_residual=True)
    assert receptive_field(zero_gamma, "layer2", (32, 32)) == fields["layer2"]
    # a field larger than the image: 435 pixels from -217 for a 64-pixel image, as the arithmetic gives it
    large = receptive_field(resnet, "layer4", (64, 64))
    assert large == fields["layer4"] and large.size[0] > 64 and large.start[0] < 0


def check_top_patches(
    top: TopPatches, images: torch.Tensor, maps: torch.Tensor, project: Callable[[int, int, int], torch.Tensor]
) -> None:
    """``top`` (units=2, k=5 of 12 images) against brute force, for a layer of 4x4 maps (``maps``: images x
    channels x positions) whose units see 6x6 pixels from -1, every 2: the 5 strongest images per channel, the
    image's window of each one's field, and ``project(image, unit, position)``'s projection cropped alike."""
    strongest, order = maps.amax(dim=2)[:, :2].T.sort(dim=1, descending=True)
    torch.testing.assert_close(top.activations, strongest[:, :5])
    assert top.patches.shape == top.projections.shape == (2, 5, 1, 6, 6)
    for unit in range(2):
        for rank in range(5):
            index = int(order[unit, rank])
            position = int(maps[index, unit].argmax())
            top_row, left = -1 + 2 * (position // 4), -1 + 2 * (position % 4)
            padded = F.pad(images[index], (1, 1, 1, 1))  # pixel (r, c) of the image is (r + 1, c + 1) here
            window = padded[:, top_row + 1 : top_row + 7, left + 1 : left + 7]
            assert window.shape == (1, 6, 6)
            torch.testing.assert_close(top.patches[unit, rank], window)
            projected = F.pad(project(index, unit, position), (1, 1, 1, 1))
            torch.testing.assert_close(
                top.projections[unit, rank], projected[:, top_row + 1 : top_row + 7, left + 1 : left + 7]
            )


def test_top_patches_are_the_strongest_over_the_data_set() -> None:
    net = small_net()
    generator = torch.Generator().manual_seed(2)
    data = [torch.randn(4, 1, 10, 10, generator=generator) for _ in range(3)]
    top = top_patches(net, data, "4", units=2, k=5)
    assert not top.through_branches
    images = torch.cat(data)
    with torch.no_grad():
        maps = net(images).flatten(2)  # 12 images x 3 channels x (4x4 positions)
    # the field of layer 4: conv 3 pad 1 (3, jump 1, start -1), pool 2 (4, jump 2, -1), conv 2 (4 + 1*2 = 6, jump 2)
    check_top_patches(top, images, maps, lambda index, unit, _: deconvnet(net, images[index : index + 1], "4", unit)[0])


def test_top_patches_through_branches() -> None:
    net = residual_net()
    generator = torch.Generator().manual_seed(2)
    data = [torch.randn(4, 1, 10, 10, generator=generator) for _ in range(3)]
    top = top_patches(net, data, "4", units=2, k=5)
    assert top.through_branches
    images = torch.cat(data)
    with torch.no_grad():
        maps = net(images).flatten(2)  # 12 images x 2 channels x (4x4 positions)

    def project(index: int, unit: int, position: int) -> torch.Tensor:
        chosen = torch.tensor([unit]), torch.tensor([position])
        return project_through_branches(net, images[index : index + 1], "4", *chosen)[0]

    # the field of layer 4: conv 3 (size 3, start 0), the residual's longer path, a 3x3 conv padded by 1 (5, start
    # -1), pool 2 (5 + 1*1 = 6, jump 2, start -1)
    check_top_patches(top, images, maps, project)
    assert top.projections.isfinite().all() and (top.projections.flatten(1) != 0).any(dim=1).all()


def test_top_patches_by_hand_at_the_image_corner() -> None:
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]]))
    bright = torch.zeros(1, 1, 8, 8)
    bright[0, 0, 0, 0] = 5.0  # the conv's output is 5 at (0, 0) only, so pool1's strongest unit is (0, 0)
    data = [(torch.zeros(1, 1, 8, 8), torch.tensor([0])), (bright, torch.tensor([1]))]  # (images, labels) pairs
    top = top_patches(net, data, "2", units=4, k=3)  # one channel, two images: units 1, k 2
    torch.testing.assert_close(top.activations, torch.tensor([[5.0, 0.0]]))
    # the field of pool unit (0, 0): conv 3 pad 1 then pool 2 -> 4 pixels from -1: a row and a column of zeros first
    patch = torch.zeros(1, 4, 4)
    patch[0, 1, 1] = 5.0
    torch.testing.assert_close(top.patches[0, 0], patch)
    # its projection: 5 unpooled to (0, 0), spread by the transposed filter: 5 * 1 at (0, 0), 5 * 0.5 at (1, 1)
    projection = torch.zeros(1, 4, 4)
    projection[0, 1, 1], projection[0, 2, 2] = 5.0, 2.5
    torch.testing.assert_close(top.projections[0, 0], projection)


def residual_net() -> nn.Module:
    """conv 3x3, ReLU, x + conv3x3(x) (padded by 1), ReLU, 2x2 max pool: 1x10x10 -> 2x8x8 -> 2x4x4."""
    torch.manual_seed(0)
    residual = Residual(nn.Conv2d(2, 2, 3, padding=1))
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), residual, nn.ReLU(), nn.MaxPool2d(2))


def test_networks_it_cannot_invert_are_refused_by_name() -> None:
    net = residual_net()
    assert deconvnet(net, torch.randn(1, 1, 8, 8), "1").shape == (1, 1, 8, 8)  # below the addition it works
    with pytest.raises(
        ValueError, match=r"blocks that add or concatenate tensors: 2 \(Residual\) \(it inverts"
    ) as error:
        deconvnet(net, torch.randn(1, 1, 8, 8), "4")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"layer1\.0 \(BasicBlock\), layer1\.1 \(BasicBlock\)"):
        deconvnet(create_model("resnet20"), torch.randn(1, 3, 32, 32), "layer1.1.act2")
    with pytest.raises(ValueError, match=r"layers of other kinds: features\.s2 \(TrainableSubsampling\)"):
        deconvnet(create_model("lenet5_paper"), torch.randn(1, 1, 32, 32), "features.c3")
    with pytest.raises(ValueError, match=r"unit must be a channel of '4', 0 to 2, got 3$"):
        deconvnet(small_net(), torch.randn(1, 1, 6, 6), "4", unit=3)
    with pytest.raises(ValueError, match=r"units must be a positive number of channels, got 0$"):
        top_patches(small_net(), [torch.randn(1, 1, 6, 6)], "4", units=0)
    with pytest.raises(ValueError, match=r"top_patches needs at least one batch of images$"):
        top_patches(small_net(), [], "4")
    with pytest.raises(ValueError, match=r"no layer 'conv9'"):
        deconvnet(small_net(), torch.randn(1, 1, 6, 6), "conv9")


@pytest.mark.parametrize(
    ("name", "options", "size", "layer"),
    [
        ("zfnet", {}, 207, "features.norm2"),  # the smallest input ZFNet takes, through its normalisation
        ("alexnet", {}, 227, "features.conv3"),
        pytest.param("vgg11", {}, 32, "features.stage4", marks=pytest.mark.slow),  # a reduced input; 133M weights
        ("lenet5", {}, 32, "features.f6"),  # tanh and average pooling, through the flatten and F6
        ("lenet5", {"activation": "relu", "pool": "max"}, 32, "features.act5"),
    ],
)
def test_runs_on_the_zoo_and_returns_maps_of_the_input_size(name: str, options: dict, size: int, layer: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, **options)
    images = torch.randn(2, model.in_channels, size, size)
    projected = deconvnet(model, images, layer)
    assert projected.shape == images.shape
    assert projected.isfinite().all() and (projected != 0).any()
