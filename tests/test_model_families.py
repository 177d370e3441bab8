"""What the CNN families share, tested alike with each family's numbers in a table: the output sizes of their layers
as their papers give them, the classifier interface (timm's) and the least input size."""

from pathlib import Path

import pytest
import torch
import torchvision

from conftest import build_on_meta, record_output_shapes
from models import create_model

# Each layer's output (channels, height, width) in the papers' figures and tables, a row a layer: (figure, layer, size)
LAYER_SIZES = [
    # LeNet-5, Figure 2 of the 1998 paper
    ("lenet5 figure 2", "c1", (6, 28, 28)),
    ("lenet5 figure 2", "s2", (6, 14, 14)),
    ("lenet5 figure 2", "c3", (16, 10, 10)),
    ("lenet5 figure 2", "s4", (16, 5, 5)),
    ("lenet5 figure 2", "c5", (120, 1, 1)),
    ("lenet5 figure 2", "f6", (84,)),
    # AlexNet, Figure 2, at the 227x227 inputs its sizes follow
    ("alexnet figure 2", "conv1", (96, 55, 55)),
    ("alexnet figure 2", "norm1", (96, 55, 55)),
    ("alexnet figure 2", "pool1", (96, 27, 27)),
    ("alexnet figure 2", "conv2", (256, 27, 27)),
    ("alexnet figure 2", "pool2", (256, 13, 13)),
    ("alexnet figure 2", "conv3", (384, 13, 13)),
    ("alexnet figure 2", "conv4", (384, 13, 13)),
    ("alexnet figure 2", "conv5", (256, 13, 13)),
    ("alexnet figure 2", "pool5", (256, 6, 6)),
    # torchvision's AlexNet
    ("alexnet_tv", "conv1", (64, 55, 55)),
    ("alexnet_tv", "pool1", (64, 27, 27)),
    ("alexnet_tv", "conv2", (192, 27, 27)),
    ("alexnet_tv", "pool2", (192, 13, 13)),
    ("alexnet_tv", "conv5", (256, 13, 13)),
    ("alexnet_tv", "pool5", (256, 6, 6)),
    # ZFNet, Figure 3; and its wider conv3-5 (Section 4.1)
    ("zfnet figure 3", "conv1", (96, 110, 110)),
    ("zfnet figure 3", "pool1", (96, 55, 55)),
    ("zfnet figure 3", "norm1", (96, 55, 55)),
    ("zfnet figure 3", "conv2", (256, 26, 26)),
    ("zfnet figure 3", "pool2", (256, 13, 13)),
    ("zfnet figure 3", "conv3", (384, 13, 13)),
    ("zfnet figure 3", "conv4", (384, 13, 13)),
    ("zfnet figure 3", "conv5", (256, 13, 13)),
    ("zfnet figure 3", "pool5", (256, 6, 6)),
    ("zfnet wide figure 3", "conv1", (96, 110, 110)),
    ("zfnet wide figure 3", "pool1", (96, 55, 55)),
    ("zfnet wide figure 3", "norm1", (96, 55, 55)),
    ("zfnet wide figure 3", "conv2", (256, 26, 26)),
    ("zfnet wide figure 3", "pool2", (256, 13, 13)),
    ("zfnet wide figure 3", "conv3", (512, 13, 13)),
    ("zfnet wide figure 3", "conv4", (1024, 13, 13)),
    ("zfnet wide figure 3", "conv5", (512, 13, 13)),
    ("zfnet wide figure 3", "pool5", (512, 6, 6)),
    # VGG, Table 1: after the first conv of stage 1 and after each of the five max-pools
    ("vgg table 1", "stage1.conv1", (64, 224, 224)),
    ("vgg table 1", "stage1.pool", (64, 112, 112)),
    ("vgg table 1", "stage2.pool", (128, 56, 56)),
    ("vgg table 1", "stage3.pool", (256, 28, 28)),
    ("vgg table 1", "stage4.pool", (512, 14, 14)),
    ("vgg table 1", "stage5.pool", (512, 7, 7)),
    # DenseNet-121, Table 1; channels: 64 + 6 * 32 = 256 -> 128, + 12 * 32 = 512 -> 256, + 24 * 32 = 1024 -> 512,
    # + 16 * 32 = 1024
    ("densenet121 table 1", "conv0", (64, 112, 112)),
    ("densenet121 table 1", "pool0", (64, 56, 56)),
    ("densenet121 table 1", "denseblock1", (256, 56, 56)),
    ("densenet121 table 1", "transition1", (128, 28, 28)),
    ("densenet121 table 1", "denseblock2", (512, 28, 28)),
    ("densenet121 table 1", "transition2", (256, 14, 14)),
    ("densenet121 table 1", "denseblock3", (1024, 14, 14)),
    ("densenet121 table 1", "transition3", (512, 7, 7)),
    ("densenet121 table 1", "denseblock4", (1024, 7, 7)),
    # DenseNet-BC (L=100, k=12), Section 3: 24 + 16 * 12 = 216 -> 108, + 192 = 300 -> 150, + 192 = 342
    ("densenet_bc_100 section 3", "conv0", (24, 32, 32)),
    ("densenet_bc_100 section 3", "denseblock1", (216, 32, 32)),
    ("densenet_bc_100 section 3", "transition1", (108, 16, 16)),
    ("densenet_bc_100 section 3", "denseblock2", (300, 16, 16)),
    ("densenet_bc_100 section 3", "transition2", (150, 8, 8)),
    ("densenet_bc_100 section 3", "denseblock3", (342, 8, 8)),
    # SqueezeNet 1.0, Table 1, at the authors' 227x227 crops
    ("squeezenet1_0 table 1", "conv1", (96, 111, 111)),
    ("squeezenet1_0 table 1", "maxpool1", (96, 55, 55)),
    ("squeezenet1_0 table 1", "fire2", (128, 55, 55)),
    ("squeezenet1_0 table 1", "fire3", (128, 55, 55)),
    ("squeezenet1_0 table 1", "fire4", (256, 55, 55)),
    ("squeezenet1_0 table 1", "maxpool4", (256, 27, 27)),
    ("squeezenet1_0 table 1", "fire5", (256, 27, 27)),
    ("squeezenet1_0 table 1", "fire6", (384, 27, 27)),
    ("squeezenet1_0 table 1", "fire7", (384, 27, 27)),
    ("squeezenet1_0 table 1", "fire8", (512, 27, 27)),
    ("squeezenet1_0 table 1", "maxpool8", (512, 13, 13)),
    ("squeezenet1_0 table 1", "fire9", (512, 13, 13)),
    ("squeezenet1_0 table 1", "conv10", (1000, 13, 13)),
    ("squeezenet1_0 table 1", "avgpool10", (1000, 1, 1)),
    # SqueezeNet 1.1
    ("squeezenet1_1", "conv1", (64, 111, 111)),
    ("squeezenet1_1", "maxpool1", (64, 55, 55)),
    ("squeezenet1_1", "fire3", (128, 55, 55)),
    ("squeezenet1_1", "maxpool3", (128, 27, 27)),
    ("squeezenet1_1", "fire5", (256, 27, 27)),
    ("squeezenet1_1", "maxpool5", (256, 13, 13)),
    ("squeezenet1_1", "fire9", (512, 13, 13)),
    # ResNeXt and wide ResNet on ImageNet: ResNet-50's stages (He et al. Table 1; Xie et al. Table 1), the inner widths
    # grouped or doubled (tests/test_resnet_widths.py)
    ("bottleneck resnet table 1", "conv1", (64, 112, 112)),
    ("bottleneck resnet table 1", "maxpool", (64, 56, 56)),
    ("bottleneck resnet table 1", "layer1", (256, 56, 56)),
    ("bottleneck resnet table 1", "layer2", (512, 28, 28)),
    ("bottleneck resnet table 1", "layer3", (1024, 14, 14)),
    ("bottleneck resnet table 1", "layer4", (2048, 7, 7)),
    # ResNeXt-29 for CIFAR, Xie et al. Section 5.3: stages of output width 256, 512, 1024
    ("resnext29 section 5.3", "stem", (64, 32, 32)),
    ("resnext29 section 5.3", "stage1", (256, 32, 32)),
    ("resnext29 section 5.3", "stage2", (512, 16, 16)),
    ("resnext29 section 5.3", "stage3", (1024, 8, 8)),
    ("resnext29 section 5.3", "pool", (1024,)),
    # Wide ResNet, Zagoruyko & Komodakis Table 1: groups of 16k, 32k, 64k channels (k = 10, 8, 4)
    *[
        (f"wrn k={k} table 1", layer, size)
        for k in (10, 8, 4)
        for layer, size in [
            ("conv1", (16, 32, 32)),
            ("layer1", (16 * k, 32, 32)),
            ("layer2", (32 * k, 16, 16)),
            ("layer3", (64 * k, 8, 8)),
            ("avgpool", (64 * k, 1, 1)),
        ]
    ],
    # Pre-activation ResNet for CIFAR, He et al. 2016 ("Identity Mappings") Section 4: bottleneck units of outputs
    # 64, 128, 256 (ResNet-164, ResNet-1001) or basic units of 16, 32, 64 (ResNet-110), the final BN-ReLU
    *[
        (f"preact {block} section 4", layer, (width * scale, size, size))
        for block, scale in (("bottleneck", 4), ("basic", 1))
        for layer, width, size in [("layer1", 16, 32), ("layer2", 32, 16), ("layer3", 64, 8), ("act", 64, 8)]
    ],
    ("preact bottleneck section 4", "conv1", (16, 32, 32)),
    ("preact bottleneck section 4", "avgpool", (256, 1, 1)),
    # Pre-activation ResNet-18 on ImageNet (Section 5): Table 1's stages of ResNet-18, the final BN-ReLU
    ("preact basic table 1", "conv1", (64, 112, 112)),
    ("preact basic table 1", "maxpool", (64, 56, 56)),
    ("preact basic table 1", "layer1", (64, 56, 56)),
    ("preact basic table 1", "layer2", (128, 28, 28)),
    ("preact basic table 1", "layer3", (256, 14, 14)),
    ("preact basic table 1", "layer4", (512, 7, 7)),
    ("preact basic table 1", "act", (512, 7, 7)),
    # Network in Network, CIFAR-10 (Section 4.1; models/nin.py's table)
    ("nin section 4.1", "mlpconv1", (96, 32, 32)),
    ("nin section 4.1", "pool1", (96, 16, 16)),
    ("nin section 4.1", "mlpconv2", (192, 16, 16)),
    ("nin section 4.1", "pool2", (192, 8, 8)),
    ("nin section 4.1", "classifier.conv3", (10, 8, 8)),
    ("nin section 4.1", "avgpool", (10, 1, 1)),
    # FractalNet, Section 4: each block keeps the size of its input (padded convs) and the pool after it halves it
    ("fractalnet section 4", "blocks.0", (64, 32, 32)),
    ("fractalnet section 4", "blocks.1", (128, 16, 16)),
    ("fractalnet section 4", "blocks.2", (256, 8, 8)),
    ("fractalnet section 4", "blocks.3", (512, 4, 4)),
    ("fractalnet section 4", "blocks.4", (512, 2, 2)),
    ("fractalnet section 4", "avgpool", (512, 1, 1)),
    # GoogLeNet, Table 1's "output size" column, and the aux heads' pools (Section 5: 4x4x512 for 4a, 4x4x528 for 4d)
    ("googlenet table 1", "conv1", (64, 112, 112)),
    ("googlenet table 1", "pool1", (64, 56, 56)),
    ("googlenet table 1", "conv2", (192, 56, 56)),
    ("googlenet table 1", "pool2", (192, 28, 28)),
    ("googlenet table 1", "inception3a", (256, 28, 28)),
    ("googlenet table 1", "inception3b", (480, 28, 28)),
    ("googlenet table 1", "pool3", (480, 14, 14)),
    ("googlenet table 1", "inception4a", (512, 14, 14)),
    ("googlenet table 1", "inception4b", (512, 14, 14)),
    ("googlenet table 1", "inception4c", (512, 14, 14)),
    ("googlenet table 1", "inception4d", (528, 14, 14)),
    ("googlenet table 1", "inception4e", (832, 14, 14)),
    ("googlenet table 1", "pool4", (832, 7, 7)),
    ("googlenet table 1", "inception5a", (832, 7, 7)),
    ("googlenet table 1", "inception5b", (1024, 7, 7)),
    ("googlenet table 1", "avgpool", (1024, 1, 1)),
    ("googlenet table 1", "aux1.pool", (512, 4, 4)),
    ("googlenet table 1", "aux2.pool", (528, 4, 4)),
    # Inception-v3, Table 1's "input size" column at 299x299 (the release's stem; tests/test_inception_v3.py)
    ("inception_v3 table 1", "Conv2d_1a_3x3", (32, 149, 149)),
    ("inception_v3 table 1", "Conv2d_2a_3x3", (32, 147, 147)),
    ("inception_v3 table 1", "Conv2d_2b_3x3", (64, 147, 147)),
    ("inception_v3 table 1", "maxpool1", (64, 73, 73)),
    ("inception_v3 table 1", "Mixed_5d", (288, 35, 35)),
    ("inception_v3 table 1", "Mixed_6e", (768, 17, 17)),
    ("inception_v3 table 1", "Mixed_7a", (1280, 8, 8)),
    ("inception_v3 table 1", "Mixed_7c", (2048, 8, 8)),
    ("inception_v3 table 1", "avgpool", (2048, 1, 1)),
    # Xception, Figure 5 at 299x299 (models/xception.py's table: the first two convs unpadded, the pools padded)
    ("xception figure 5", "entry_flow.conv1", (32, 149, 149)),
    ("xception figure 5", "entry_flow.conv2", (64, 147, 147)),
    ("xception figure 5", "entry_flow.block1", (128, 74, 74)),
    ("xception figure 5", "entry_flow.block2", (256, 37, 37)),
    ("xception figure 5", "entry_flow.block3", (728, 19, 19)),
    ("xception figure 5", "middle_flow", (728, 19, 19)),
    ("xception figure 5", "exit_flow.block", (1024, 10, 10)),
    ("xception figure 5", "exit_flow.conv3", (1536, 10, 10)),
    ("xception figure 5", "exit_flow.conv4", (2048, 10, 10)),
    ("xception figure 5", "avgpool", (2048, 1, 1)),
]

# The models of those figures: (figure, name, options, input (channels, size), classes); built on the meta device
# (shapes without memory or arithmetic), the VGGs of Table 1 but vgg11_bn still take seconds each on a CPU
MODELS = [
    ("lenet5 figure 2", "lenet5", {}, (1, 32), 10),
    ("alexnet figure 2", "alexnet", {}, (3, 227), 1000),
    ("alexnet_tv", "alexnet_tv", {}, (3, 224), 1000),
    ("zfnet figure 3", "zfnet", {"wide": False}, (3, 224), 1000),
    ("zfnet wide figure 3", "zfnet", {"wide": True}, (3, 224), 1000),
    pytest.param("vgg table 1", "vgg11", {}, (3, 224), 1000, marks=pytest.mark.slow),
    pytest.param("vgg table 1", "vgg13", {}, (3, 224), 1000, marks=pytest.mark.slow),
    pytest.param("vgg table 1", "vgg16", {}, (3, 224), 1000, marks=pytest.mark.slow),
    pytest.param("vgg table 1", "vgg19", {}, (3, 224), 1000, marks=pytest.mark.slow),
    ("vgg table 1", "vgg11_bn", {}, (3, 224), 1000),
    pytest.param("vgg table 1", "vgg13_bn", {}, (3, 224), 1000, marks=pytest.mark.slow),
    pytest.param("vgg table 1", "vgg16_bn", {}, (3, 224), 1000, marks=pytest.mark.slow),
    pytest.param("vgg table 1", "vgg19_bn", {}, (3, 224), 1000, marks=pytest.mark.slow),
    ("densenet121 table 1", "densenet121", {}, (3, 224), 1000),
    ("densenet_bc_100 section 3", "densenet_bc_100", {}, (3, 32), 10),
    ("squeezenet1_0 table 1", "squeezenet1_0", {}, (3, 227), 1000),
    ("squeezenet1_1", "squeezenet1_1", {}, (3, 224), 1000),
    *[
        ("bottleneck resnet table 1", name, {}, (3, 224), 1000)
        for name in ("resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2")
    ],
    ("resnext29 section 5.3", "resnext29_8x64d", {}, (3, 32), 10),
    ("resnext29 section 5.3", "resnext29_16x64d", {}, (3, 32), 10),
    ("wrn k=10 table 1", "wrn_28_10", {}, (3, 32), 10),
    ("wrn k=8 table 1", "wrn_16_8", {}, (3, 32), 10),
    ("wrn k=4 table 1", "wrn_40_4", {}, (3, 32), 10),
    ("nin section 4.1", "nin_cifar10", {}, (3, 32), 10),
    ("fractalnet section 4", "fractalnet20", {}, (3, 32), 10),
    ("preact bottleneck section 4", "preact_resnet164", {}, (3, 32), 10),
    ("preact basic section 4", "preact_resnet110", {}, (3, 32), 10),
    ("preact basic table 1", "preact_resnet18", {}, (3, 224), 1000),
    ("preact basic table 1", "preact_resnet34", {}, (3, 224), 1000),
    *[("bottleneck resnet table 1", name, {}, (3, 224), 1000) for name in ("preact_resnet50", "preact_resnet200")],
    ("googlenet table 1", "googlenet", {}, (3, 224), 1000),
    ("googlenet table 1", "googlenet_tv", {}, (3, 224), 1000),
    # without its aux head: batch norm in training takes no batch of one 1x1 map (the head's 5x5 conv output)
    ("inception_v3 table 1", "inception_v3", {"aux_logits": False}, (3, 299), 1000),
    ("xception figure 5", "xception", {}, (3, 299), 1000),
]


@pytest.mark.parametrize(("figure", "name", "options", "image", "classes"), MODELS)
def test_layer_output_sizes_follow_the_papers(
    figure: str, name: str, options: dict, image: tuple[int, int], classes: int
) -> None:
    expected = {layer: size for row, layer, size in LAYER_SIZES if row == figure}
    model = build_on_meta(name, **options)  # in training mode, in which GoogLeNet's aux heads run too
    shapes = record_output_shapes(model, expected)
    channels, size = image
    output = model(torch.empty(1, channels, size, size, device="meta"))  # shapes only: no memory, no arithmetic
    outputs = output if isinstance(output, tuple) else (output,)  # GoogLeNet in training: logits, aux1's, aux2's
    assert [out.shape for out in outputs] == [(1, classes)] * len(outputs)
    assert shapes == expected


# (name, input (channels, size), forward_features' output, the classifier's path)
@pytest.mark.parametrize(
    ("name", "image", "features", "classifier"),
    [
        ("lenet5", (1, 32), (84,), "classifier"),
        ("densenet121", (3, 64), (1024, 2, 2), "classifier"),
        ("densenet_bc_100", (3, 32), (342, 8, 8), "classifier"),
        ("squeezenet1_0", (3, 64), (512, 3, 3), "classifier.conv10"),
        ("squeezenet1_1", (3, 64), (512, 3, 3), "classifier.conv10"),
        ("nin_cifar10", (3, 32), (192, 8, 8), "classifier.conv3"),
    ],
)
def test_classifier_interface(name: str, image: tuple[int, int], features: tuple[int, ...], classifier: str) -> None:
    model = create_model(name).eval()
    channels, size = image
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, *features)
    assert model.get_classifier() is model.get_submodule(classifier)
    model.reset_classifier(5)
    with torch.no_grad():
        assert model(x).shape == (2, 5)
    assert model.num_classes == 5


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("densenet121", 29),
        ("densenet_bc_100", 4),
        ("squeezenet1_0", 21),
        ("squeezenet1_1", 17),
        ("nin_cifar10", 4),
        ("fractalnet20", 32),
    ],
)
def test_min_input_size(name: str, size: int) -> None:
    model = create_model(name).eval()
    assert model.min_input_size == size
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, model.num_classes)
        with pytest.raises(ValueError, match=f"needs images of at least {size}x{size} pixels"):
            model(torch.randn(1, 3, size - 1, size - 1))
        with pytest.raises(RuntimeError, match="Output size is too small"):  # the check is not stricter than needed
            model.forward_features(torch.randn(1, 3, size - 1, size - 1))


# (name, weights compared as (our key, torchvision's key), a model of the family that the file does not fit)
@pytest.mark.parametrize(
    ("name", "keys", "other"),
    [
        (
            "densenet121",
            [("classifier.weight",) * 2, ("features.denseblock4.denselayer16.conv2.weight",) * 2],
            "densenet169",
        ),
        (
            "squeezenet1_1",
            [
                ("features.fire4.expand3x3.weight", "features.6.expand3x3.weight"),
                ("classifier.conv10.bias", "classifier.1.bias"),
            ],
            "squeezenet1_0",
        ),
    ],
)
def test_weights_load_from_a_torchvision_file(
    tmp_path: Path, name: str, keys: list[tuple[str, str]], other: str
) -> None:
    theirs = getattr(torchvision.models, name)(weights=None).state_dict()
    torch.save(theirs, tmp_path / "w.pth")
    ours = create_model(name, pretrained=tmp_path / "w.pth").state_dict()
    for our_key, their_key in keys:
        torch.testing.assert_close(ours[our_key], theirs[their_key])
    with pytest.raises(ValueError, match="nothing was loaded"):
        create_model(other, pretrained=tmp_path / "w.pth")
