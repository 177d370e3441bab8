"""Transfer learning from pretrained weights (``model.pretrained``), as the CS231n notes describe it.

``finetune=fixed_features`` freezes everything but the classifier ("ConvNet as fixed feature extractor": a
linear classifier trained on the pretrained network's codes), ``finetune=full`` trains everything with the
pretrained layers at a lower learning rate ("fine-tuning the ConvNet"); ``freeze=<layer>`` keeps the early,
generic layers fixed and fine-tunes the later, more data-set-specific ones. A pretrained classifier for another
number of classes than the data's is replaced with a new one (``training.tasks.build``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from models import ClassifierNet, did_you_mean

FREEZE_CHOICES = ("none", "all_but_classifier")
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)  # kept in eval mode when frozen


class FineTuning:
    """Which layers of a pretrained network train, and at what learning rate.

    ``freeze`` is ``"none"`` (fine-tune everything), ``"all_but_classifier"`` (a fixed feature extractor) or the
    name of a layer (``layer3`` of a ResNet, ``features`` of LeNet-5, a dotted name such as ``features.stage4``
    inside one): that layer and every one before it are frozen. Frozen parameters do not train (and are not
    given to the optimizer) and frozen batch norms keep their running statistics (they stay in eval mode).
    ``backbone_lr_scale`` multiplies the learning rate of every trainable layer but the classifier, so that the
    pretrained part changes less than the new classifier (0.1 is a common choice).
    """

    def __init__(self, freeze: str = "none", backbone_lr_scale: float = 1.0) -> None:
        if not isinstance(freeze, str) or not freeze:
            raise ValueError(f"freeze takes {' | '.join(FREEZE_CHOICES)} | <layer name>, got {freeze!r}")
        if not backbone_lr_scale > 0:
            raise ValueError(f"backbone_lr_scale must be positive (freeze a layer to stop it), got {backbone_lr_scale}")
        self.freeze = freeze
        self.backbone_lr_scale = float(backbone_lr_scale)

    def frozen_modules(self, net: ClassifierNet) -> list[nn.Module]:
        """The modules of ``net`` whose own parameters and statistics ``freeze`` fixes."""
        if self.freeze == "none":
            return []
        if self.freeze == "all_but_classifier":
            head = {id(module) for classifier in net.get_classifiers() for module in classifier.modules()}
            return [module for module in net.modules() if id(module) not in head]
        try:
            last = net.get_submodule(self.freeze)
        except AttributeError:
            layers = [name for name, _ in net.named_children()]
            hint = did_you_mean(self.freeze, [name for name, _ in net.named_modules() if name])
            raise ValueError(
                f"freeze={self.freeze!r}: {type(net).__name__} has no layer of that name; {hint}accepted: "
                f"{', '.join(FREEZE_CHOICES)}, or a layer: {', '.join(layers)} (a dotted name reaches inside one)"
            ) from None
        inside = {id(module) for module in last.modules()}
        frozen: list[nn.Module] = []
        for module in net.modules():  # in the order the layers were built: up to the end of ``last``
            if frozen and id(frozen[-1]) in inside and id(module) not in inside:
                break
            frozen.append(module)
        return frozen

    def freeze_layers(self, net: ClassifierNet) -> None:
        """Stop the frozen modules' parameters from training; ``ValueError`` when nothing would be left to train, or
        for a network without the zoo's classifier interface."""
        if not isinstance(net, ClassifierNet):
            raise ValueError(f"fine-tuning takes the zoo's networks (models.create_model), not a {type(net).__name__}")
        frozen = {id(parameter) for module in self.frozen_modules(net) for parameter in module.parameters(False)}
        if frozen and all(id(parameter) in frozen for parameter in net.parameters()):
            raise ValueError(f"freeze={self.freeze!r} freezes every layer of {type(net).__name__}: nothing would train")
        for parameter in net.parameters():
            if id(parameter) in frozen:
                parameter.requires_grad_(False)

    def frozen_norms(self, net: ClassifierNet) -> list[nn.Module]:
        """The batch norms among the frozen modules: kept in eval mode, so that their running statistics stay."""
        return [module for module in self.frozen_modules(net) if isinstance(module, BATCH_NORMS)]

    def scale_backbone(self, net: ClassifierNet, groups: list[dict[str, Any]], lr: float) -> list[dict[str, Any]]:
        """Split each optimizer parameter group into the classifiers' part, at ``lr``, and the rest (the backbone),
        at ``backbone_lr_scale * lr``; the groups at ``lr`` come first."""
        if self.backbone_lr_scale == 1.0:
            return groups
        head = {id(parameter) for classifier in net.get_classifiers() for parameter in classifier.parameters()}

        def part(group: dict[str, Any], name: str, in_head: bool) -> dict[str, Any]:
            params = [parameter for parameter in group["params"] if (id(parameter) in head) == in_head]
            label = f"{name}/{group['name']}" if "name" in group else name
            return {**group, "params": params, "name": label}

        heads = [part(group, "head", True) for group in groups]
        backbones = [part(group, "backbone", False) | {"lr": lr * self.backbone_lr_scale} for group in groups]
        return heads + backbones
