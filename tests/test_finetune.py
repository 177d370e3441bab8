"""Transfer learning: a pretrained network partly frozen (its batch norms' statistics too), its backbone at a lower
learning rate, and a new classifier for another number of classes; end to end through the training job."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch.nn.modules.batchnorm import _BatchNorm

from conftest import CONFIG_DIR, compose_config
from models import create_model
from training import Classifier
from training.cli import check_overrides
from training.config import UserError, instantiate
from training.finetune import FineTuning
from training.regularization import MaxNorm
from training.tasks import build, evaluate, train

FAST = ["trainer.max_epochs=1", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2"]
FAST += ["+trainer.limit_test_batches=2", "logger=csv"]
FIVE_CLASSES = ["data=fake", "data.num_classes=5", "data.in_channels=1", "data.image_size=32"]


def trainable(net: torch.nn.Module) -> set[str]:
    return {name for name, parameter in net.named_parameters() if parameter.requires_grad}


def test_freezing_up_to_a_layer_freezes_it_and_everything_before() -> None:
    net = create_model("resnet20")
    FineTuning("layer2").freeze_layers(net)
    assert trainable(net) == {name for name, _ in net.named_parameters() if name.startswith(("layer3.", "fc."))}
    frozen_norms = {module for module in FineTuning("layer2").frozen_norms(net)}
    for name, module in net.named_modules():
        if isinstance(module, _BatchNorm):
            assert (module in frozen_norms) == name.startswith(("bn1", "layer1.", "layer2.")), name


def test_a_dotted_name_reaches_inside_a_layer() -> None:
    net = create_model("lenet5", norm="batch")
    FineTuning("features.c3").freeze_layers(net)
    frozen = {name for name, _ in net.named_parameters()} - trainable(net)
    assert frozen == {"features.c1.weight", "features.c1.bias", "features.bn1.weight", "features.bn1.bias"} | {
        "features.c3.weight",
        "features.c3.bias",
    }


def test_a_fixed_feature_extractor_trains_every_classifier_googlenets_aux_heads_too() -> None:
    with torch.device("meta"):
        net = create_model("googlenet_tv", num_classes=5)
    FineTuning("all_but_classifier").freeze_layers(net)
    heads = ("classifier.", "aux1.classifier.", "aux2.classifier.")
    assert trainable(net) == {f"{head}{tensor}" for head in heads for tensor in ("weight", "bias")}


def test_frozen_batch_norms_stay_in_eval_mode_and_keep_their_statistics() -> None:
    net = create_model("resnet20", num_classes=3)
    finetune = FineTuning("layer2")
    finetune.freeze_layers(net)
    module = Classifier(net, functools.partial(torch.optim.SGD, lr=0.1), num_classes=3, finetune=finetune)
    frozen_norms = finetune.frozen_norms(net)
    before = {name: buffer.clone() for name, buffer in net.named_buffers()}
    module.eval().train()
    assert frozen_norms and not any(norm.training for norm in frozen_norms)
    assert net.layer3[0].bn1.training and net.training
    module(torch.randn(4, 3, 32, 32))
    for name, buffer in net.named_buffers():
        assert torch.equal(buffer, before[name]) == (not name.startswith("layer3.")), name


@pytest.mark.parametrize(
    ("freeze", "message"),
    [
        (
            "layer5",
            r"^freeze='layer5': CifarResNet has no layer of that name; did you mean layer3, layer2, layer1\? accepted: "
            r"none, all_but_classifier, or a layer: conv1, bn1, act1, layer1, layer2, layer3, avgpool, fc \(a dotted",
        ),
        ("fc", r"^freeze='fc' freezes every layer of CifarResNet: nothing would train$"),
    ],
)
def test_a_freeze_that_cannot_be_done_is_refused(freeze: str, message: str) -> None:
    net = create_model("resnet20")
    with pytest.raises(ValueError, match=message):
        FineTuning(freeze).freeze_layers(net)
    assert trainable(net) == {name for name, _ in net.named_parameters()}


def test_backbone_lr_scale_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"backbone_lr_scale must be positive \(freeze a layer to stop it\), got 0"):
        FineTuning(backbone_lr_scale=0)


def test_parameter_groups_split_the_backbone_and_skip_frozen_and_undecayed_tensors() -> None:
    net = create_model("resnet20", num_classes=3)
    finetune = FineTuning("layer1", backbone_lr_scale=0.1)
    finetune.freeze_layers(net)
    sgd = functools.partial(torch.optim.SGD, lr=0.2, weight_decay=5e-4)
    module = Classifier(net, sgd, num_classes=3, finetune=finetune)
    optimizer = module.configure_optimizers()
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert list(groups) == ["head/decay", "head/no_decay", "backbone/decay", "backbone/no_decay"]
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.2, 0.2, 0.02, 0.02])
    assert [group["weight_decay"] for group in optimizer.param_groups] == [5e-4, 0.0, 5e-4, 0.0]
    assert groups["head/decay"]["params"] == [net.fc.weight] and groups["head/no_decay"]["params"] == [net.fc.bias]
    assert all(p.ndim == 1 for p in groups["backbone/no_decay"]["params"])  # biases and batch-norm scales, shifts
    given = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(given) == sorted(id(p) for p in net.parameters() if p.requires_grad)  # the frozen ones left out


def test_max_norm_leaves_frozen_layers_alone() -> None:
    net = create_model("lenet5")
    FineTuning("all_but_classifier").freeze_layers(net)
    before = {name: value.clone() for name, value in net.state_dict().items()}
    MaxNorm(0.01).constrain(net)
    changed = {name for name, value in net.state_dict().items() if not torch.equal(value, before[name])}
    assert changed == {"classifier.weight"}


def test_a_digits_lenet_fine_tunes_onto_five_classes_with_its_features_fixed(train_config, tmp_path: Path) -> None:
    digits = train_config(*FAST, "model.norm=batch")
    pretrained = Path(train(digits)["best_checkpoint"])
    before = torch.load(pretrained, weights_only=True)["state_dict"]

    from_digits = [*FAST, *FIVE_CLASSES, "model.norm=batch", f"model.pretrained={pretrained}"]
    with pytest.raises(UserError, match=r"has a classifier for 10 classes, but the model has 5 .* finetune=fixed_feat"):
        build(train_config(*from_digits))
    five = train_config(*from_digits, "finetune=fixed_features")
    five.paths.output_dir = str(tmp_path / "five")
    pl.seed_everything(five.seed)
    fresh_classifier = build(five)[1].net.classifier.weight.detach().clone()
    summary = train(five)
    after_path = summary["last_checkpoint"]
    after = torch.load(after_path, weights_only=True)
    frozen = [key for key in before if key.startswith("net.features.")]
    assert any("running_mean" in key for key in frozen)  # the batch norms' statistics stayed too
    assert all(torch.equal(after["state_dict"][key], before[key]) for key in frozen)
    assert after["state_dict"]["net.classifier.weight"].shape == (5, 84)
    assert not torch.equal(after["state_dict"]["net.classifier.weight"], fresh_classifier)
    [group] = after["optimizer_states"][0]["param_groups"]
    assert len(group["params"]) == 2  # the classifier's weight and bias: nothing frozen reaches the optimizer

    # the run's checkpoint stands on its own: evaluating it needs the pretrained file no more
    pretrained.unlink()
    (tmp_path / "eval").mkdir()
    overrides = [f"ckpt_path={after_path}", "trainer.accelerator=cpu", "+trainer.limit_test_batches=2"]
    metrics = evaluate(compose_config("eval", tmp_path / "eval", overrides))
    assert 0.0 <= metrics["test/acc"] <= 1.0

    # fine-tuning everything: the new classifier at optimizer.lr, the pretrained layers at a tenth of it
    full = train_config(*FIVE_CLASSES, "model.norm=batch", f"model.pretrained={after_path}", "finetune=full")
    optimizer = build(full)[1].configure_optimizers()["optimizer"]
    assert [(group["name"], group["lr"]) for group in optimizer.param_groups] == [
        ("head", pytest.approx(0.05)),
        ("backbone", pytest.approx(0.005)),
    ]


def test_the_presets_compose_and_none_fine_tunes_nothing(train_config) -> None:
    assert not train_config().finetune
    for preset, freeze, scale in [("fixed_features", "all_but_classifier", 1.0), ("full", "none", 0.1)]:
        finetune = instantiate(train_config(f"finetune={preset}").finetune, "finetune")
        assert isinstance(finetune, FineTuning) and (finetune.freeze, finetune.backbone_lr_scale) == (freeze, scale)


def test_a_finetune_setting_asks_for_a_finetune_option_first() -> None:
    message = (
        r"^finetune.freeze is a setting of finetune=fixed_features, finetune=full, not of the chosen finetune; "
        r"choose one of them first, e.g. finetune=fixed_features finetune.freeze=...$"
    )
    with pytest.raises(UserError, match=message):
        check_overrides(["finetune.freeze=layer3"])
    check_overrides(["finetune=full", "finetune.freeze=layer3", "model.pretrained=weights.pth"])


def test_an_unknown_layer_is_a_one_line_user_error(train_config) -> None:
    with pytest.raises(UserError, match=r"^finetune: freeze='c9': LeNet5 has no layer of that name; accepted: none, "):
        build(train_config("finetune=full", "finetune.freeze=c9"))


def test_every_zoo_config_takes_pretrained_weights() -> None:
    for path in sorted((CONFIG_DIR / "model").glob("*.yaml")):
        config = OmegaConf.load(path)
        assert ("pretrained" in config) == (config._target_ == "models.create_model"), path.stem
        assert config.get("pretrained") is None
