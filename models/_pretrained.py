"""Loading pretrained weights into the zoo's modules: ours, torchvision's, or timm's.

``load_pretrained(model, source, name)`` takes a state dict, a file of one, or ``"torchvision"`` for
torchvision's default ImageNet weights. A file is told apart by its content, not its suffix: a state dict saved
with ``torch.save`` or safetensors. Training checkpoints are the training code's to read
(``training.checkpoint_io.read_net_weights``); this package takes the state dicts it returns. A family whose
parameter names differ from torchvision's implements ``convert_torchvision_state_dict(state_dict) -> state_dict``
on its model class, renaming keys explicitly (``convert_timm_state_dict`` for timm's weights of a network that
torchvision has not got); the others load as they are. Nothing is loaded unless every key and shape fits.

Files are read with ``torch.load(weights_only=True)`` or safetensors: tensors and plain data, never code.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torchvision
from torch import nn

from models._base import ClassifierNet

# our registered name -> torchvision's, for the networks whose torchvision weights load into ours
TORCHVISION_NAMES = {
    "alexnet_tv": "alexnet",
    "googlenet_tv": "googlenet",
    "inception_v3": "inception_v3",
    **{name: name for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")},
    **{name: name for name in ("resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d")},
    **{name: name for name in ("wide_resnet50_2", "wide_resnet101_2")},
    **{f"vgg{depth}{bn}": f"vgg{depth}{bn}" for depth in (11, 13, 16, 19) for bn in ("", "_bn")},
    **{f"densenet{depth}": f"densenet{depth}" for depth in (121, 161, 169, 201)},
    "squeezenet1_0": "squeezenet1_0",
    "squeezenet1_1": "squeezenet1_1",
}
# the methods by which a family renames another library's state dict into its own names: torchvision's, and timm's
# for the networks timm has but torchvision not (Xception)
CONVERTERS = ("convert_torchvision_state_dict", "convert_timm_state_dict")
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip archive
PICKLE_PROTO = b"\x80"  # the first byte of a pickle of protocol 2 or later (torch.save's legacy format)
GLOBAL_OPCODES = ("GLOBAL", "STACK_GLOBAL", "INST")  # a pickle that names a Python object to import


def _first_sentence(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text.split(". ")[0].rstrip(".") if text else type(err).__name__


def _pickled_globals(path: Path) -> list[str] | None:
    """The Python objects the first pickle in ``path`` would import, read without running it (``pickletools``);
    None when the file does not start with a well-formed pickle."""
    names: list[str] = []
    strings: list[str] = []
    try:
        with path.open("rb") as file:
            for opcode, argument, _ in pickletools.genops(file):
                if isinstance(argument, str):
                    strings.append(argument)
                if opcode.name == "STACK_GLOBAL":
                    names.append(".".join(strings[-2:]))
                elif opcode.name in GLOBAL_OPCODES:
                    names.append(str(argument).replace(" ", "."))
    except Exception:
        return None
    return names


def _unreadable(path: Path, kind: str, err: Exception) -> ValueError:
    """Why ``torch.load(weights_only=True)`` refused ``path``: code in it, a damaged file, or not a PyTorch file."""
    with path.open("rb") as file:
        head = file.read(4)
    imports = re.findall(r"GLOBAL (\S+)", str(err))
    if not imports and not head.startswith(ZIP_MAGIC):
        imports = _pickled_globals(path) or []
    if imports:
        return ValueError(
            f"{path} holds code or objects other than tensors and plain data; refusing to load it (weights_only=True): "
            f"it asks for {', '.join(dict.fromkeys(imports))}. Only load checkpoints you trust; to use one you trust, "
            "load it yourself with torch.load(weights_only=False) and save its state_dict again"
        )
    if not head:
        return ValueError(f"{path} is not a readable PyTorch {kind}: it is empty")
    if head.startswith(PICKLE_PROTO) and isinstance(err, pickle.UnpicklingError):
        return ValueError(f"{path} is not a readable PyTorch {kind}: a pickle that torch.load cannot read as weights")
    if head.startswith((ZIP_MAGIC, PICKLE_PROTO)):
        return ValueError(f"{path} is truncated or damaged ({_first_sentence(err)}); save or copy it again")
    return ValueError(f"{path} is not a readable PyTorch {kind}: neither a torch.save file nor a safetensors file")


def check_archive(path: Path) -> None:
    """Raise ``ValueError`` naming ``path`` as damaged when a member of its zip archive (``torch.save``'s format)
    fails its CRC check: its bytes changed after it was written. A file that is no whole zip archive passes."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return  # a truncated archive, a legacy pickle, not a PyTorch file: torch.load's error says which
    with archive:
        damaged = archive.testzip()
    if damaged is not None:
        raise ValueError(
            f"{path} is damaged: its part {damaged} fails the zip's CRC check (its bytes changed after it was "
            "written); nothing was loaded from it, use an intact copy"
        )


def check_finite(tensors: Mapping[str, Any], path: str | Path) -> None:
    """Raise ``ValueError`` naming ``path`` as damaged when a floating tensor of ``tensors`` (weights) holds NaN or
    an infinity, which no trained network has (``training.guards.NanGuard`` stops a run before it saves them)."""
    for key, value in tensors.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not value.isfinite().all():
            what = "NaN" if value.isnan().any() else "an infinity"
            raise ValueError(f"{path} is damaged: its weight {key} holds {what}; nothing was loaded from it")


def load_file(path: str | Path, kind: str) -> Any:
    """What a ``torch.save`` file at ``path`` holds, read with ``weights_only=True``: tensors and plain data,
    never code. A missing file raises ``FileNotFoundError``, anything else unreadable ``ValueError``; both
    messages name the file and ``kind`` ("weights file", "checkpoint"), and the latter tells a file that holds
    code (refused) from a truncated one, a damaged one (``check_archive``) and one that is not a PyTorch file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} not found: {path}")
    check_archive(path)
    try:
        with warnings.catch_warnings():  # a pickle of another protocol than torch.save's: refused below if it fails
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise _unreadable(path, kind, err) from err


def _is_safetensors(head: bytes) -> bool:
    """Whether a file starts as safetensors does: the length of its JSON header (8 bytes, little-endian), then ``{``."""
    return len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 2**27


def load_weights_file(path: str | Path) -> Any:
    """What the weights file ``path`` holds, told apart by content, not suffix: a safetensors file, or a ``torch.save``
    file read with ``load_file``. ``FileNotFoundError`` for a missing file, ``ValueError`` naming it when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    with path.open("rb") as file:
        head = file.read(16)
    if _is_safetensors(head):
        try:
            return safetensors.torch.load_file(path, device="cpu")
        except Exception as err:
            raise ValueError(f"{path} is truncated or damaged (safetensors: {_first_sentence(err)})") from err
    return load_file(path, "checkpoint or weights file")


def as_state_dict(content: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """``content``, read from the file ``path``, as a state dict: a ``ValueError`` naming the file unless it is a
    non-empty mapping of names to tensors, and naming it damaged when a weight is not finite (``check_finite``)."""
    if not (
        isinstance(content, Mapping)
        and content
        and all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in content.items())
    ):
        what = f"a {type(content).__name__}" if not isinstance(content, Mapping) else "a dict of other things"
        raise ValueError(f"{path} is not a checkpoint or weights file: it holds {what}, not a state dict of tensors")
    check_finite(content, path)
    return dict(content)


def read_state_dict(source: Mapping[str, torch.Tensor] | str | Path) -> dict[str, torch.Tensor]:
    """A state dict given as a mapping or as a file of one: ``torch.save`` (``.pt``/``.pth``) or safetensors, ours
    or torchvision's (``load_weights_file``, ``as_state_dict``).

    A training checkpoint (a dict that holds its weights under ``"state_dict"``, as Lightning saves them) is refused
    with a ``ValueError`` that says how to read it: the training code knows its layout, this package does not.
    """
    if isinstance(source, Mapping):
        return dict(source)
    content = load_weights_file(source)
    if isinstance(content, Mapping) and "state_dict" in content:
        if isinstance(content["state_dict"], Mapping):
            check_finite(content["state_dict"], source)  # a damaged file is named damaged, whatever it holds
        raise ValueError(
            f"{source} is a training checkpoint, not a state dict; read the network's weights with "
            "training.checkpoint_io.read_net_weights(path), or save them with scripts/export.py format=state_dict"
        )
    return as_state_dict(content, source)


def state_dict_problems(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str:
    """The missing and unexpected keys and the shape mismatches of ``state_dict`` against ``model``; "" if none."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)
    ]
    return "; ".join(
        f"{label} ({len(items)}): {', '.join(items[:8])}{', ...' if len(items) > 8 else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
        if items
    )


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise ``ValueError`` listing missing and unexpected keys and shape mismatches, if any."""
    problems = state_dict_problems(model, state_dict)
    if problems:
        raise ValueError(f"weights do not fit {type(model).__name__}; nothing was loaded. {problems}")


def load_torchvision_weights(model: nn.Module, source: Mapping[str, torch.Tensor] | str | Path) -> nn.Module:
    """Load a torchvision state dict (a mapping or a file path) into ``model``, renaming keys where ours differ."""
    state_dict = read_state_dict(source)
    convert = getattr(model, "convert_torchvision_state_dict", None)
    if convert is not None:
        state_dict = convert(state_dict)
    check_state_dict(model, state_dict)
    model.load_state_dict(state_dict)
    return model


class ClassCountMismatch(ValueError):
    """Pretrained weights whose classifier has another number of classes than the model."""

    def __init__(self, origin: str, name: str, loaded: int, wanted: int) -> None:
        self.origin, self.name, self.loaded, self.wanted = origin, name, loaded, wanted
        super().__init__(
            f"{origin} has a classifier for {loaded} classes, {name} here {wanted}; nothing was loaded. Build it with "
            f"num_classes={loaded}, or load with reset_classifier=True to load the rest and start a new classifier"
        )


def torchvision_state_dict(name: str) -> dict[str, torch.Tensor]:
    """torchvision's default ImageNet weights for our model ``name``, downloaded (or read from torch.hub's cache)."""
    if name not in TORCHVISION_NAMES:
        raise ValueError(
            f"torchvision has no weights for {name}; pretrained='torchvision' takes {', '.join(TORCHVISION_NAMES)}. "
            f"For {name}, pass a weights file or checkpoint"
        )
    torchvision_name = TORCHVISION_NAMES[name]
    weights = torchvision.models.get_model_weights(torchvision_name).DEFAULT
    try:
        return weights.get_state_dict(map_location="cpu", progress=True, check_hash=True, weights_only=True)
    except (OSError, RuntimeError) as err:
        reason = getattr(err, "reason", None) or _first_sentence(err)
        raise ValueError(
            f"could not download torchvision's {torchvision_name} weights ({reason}); download them on a machine "
            f"with internet and pass the file: model.pretrained=<path> (the file: {weights.url})"
        ) from err


def _in_our_names(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` as it is, or renamed from another library's names (``CONVERTERS``) where that fits ``model``
    better."""
    keys = set(model.state_dict())

    def fit(candidate: dict[str, torch.Tensor]) -> tuple[int, int]:  # more keys of the model, then fewer others
        return len(keys & set(candidate)), -len(set(candidate) - keys)

    best = state_dict
    for converter in CONVERTERS:
        convert = getattr(model, converter, None)
        if set(best) == keys or convert is None:
            continue
        converted = convert(state_dict)
        if fit(converted) > fit(best):
            best = converted
    return best


def _classifier_keys(model: ClassifierNet, state_dict: Mapping[str, torch.Tensor]) -> tuple[list[str], int | None]:
    """The keys whose tensors are per class (the classifier's, the auxiliary heads') when ``state_dict`` has
    another number of classes than ``model``, and its number of classes (None when it has no such classifier)."""
    key = next(f"{model.classifier_path}.{name}" for name in model.get_classifier().state_dict())
    if key not in state_dict or state_dict[key].ndim == 0:
        return [], None
    loaded, wanted = state_dict[key].shape[0], model.num_classes
    if loaded == wanted:
        return [], loaded
    keys = [
        name
        for name, value in model.state_dict().items()
        if name in state_dict and value.shape[:1] == (wanted,) and state_dict[name].shape == (loaded, *value.shape[1:])
    ]
    return keys, loaded


def load_pretrained(
    model: ClassifierNet,
    source: str | Path | Mapping[str, torch.Tensor],
    name: str,
    reset_classifier: bool = False,
    origin: str | None = None,
) -> ClassifierNet:
    """Load pretrained weights into ``model``, the zoo's model registered as ``name``; return it.

    ``source`` is a state dict, a file of one (see ``read_state_dict``; ours or torchvision's), or ``"torchvision"``
    for torchvision's default ImageNet weights. When their classifier has another number of classes than
    ``model``, ``reset_classifier`` loads everything else and gives the model a new classifier
    (``model.reset_classifier``); without it that raises ``ClassCountMismatch``. Any other misfit raises
    ``ValueError`` naming the source (as ``origin`` when given), the model and the keys; nothing is loaded then.
    """
    if isinstance(source, Mapping):
        state_dict, named = dict(source), "the state dict"
    elif isinstance(source, str | Path) and str(source) == "torchvision":
        state_dict, named = torchvision_state_dict(name), f"torchvision's {TORCHVISION_NAMES[name]} weights"
    elif isinstance(source, str | Path):
        state_dict, named = read_state_dict(source), str(source)
    else:
        raise TypeError(f"pretrained takes a file path or 'torchvision', got {source!r}")
    origin = origin or named
    state_dict = _in_our_names(model, state_dict)
    classifier_keys, loaded_classes = _classifier_keys(model, state_dict)
    expected = model.state_dict()
    problems = state_dict_problems(model, {**state_dict, **{key: expected[key] for key in classifier_keys}})
    if problems:
        raise ValueError(f"{origin} does not fit {name} ({type(model).__name__}); nothing was loaded. {problems}")
    if classifier_keys and not reset_classifier:
        raise ClassCountMismatch(origin, name, loaded_classes, model.num_classes)
    model.load_state_dict(
        {key: value for key, value in state_dict.items() if key not in classifier_keys}, strict=not classifier_keys
    )
    if classifier_keys:
        model.reset_classifier(model.num_classes)
    return model
