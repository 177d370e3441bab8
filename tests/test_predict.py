"""Inference outside Lightning: ``load_model`` and ``scripts/predict.py`` on image files, against the test-set path."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from test_images import write_decompression_bomb
from test_safety import REFUSAL, WRITERS

from conftest import compose_config, model_inputs, run_script
from data.digits import DigitsDataModule
from data.images import open_image
from training import load_model
from training.config import UserError, instantiate
from training.inference import predict
from training.tasks import train

IMAGES = 60  # of the test split


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet-5 trained on the digits for two epochs."""
    run_dir = tmp_path_factory.mktemp("run")
    overrides = ["trainer.accelerator=cpu", "trainer.max_epochs=2", "test=false", "logger=none"]
    callbacks = ["callbacks.progress_bar=null", "callbacks.model_summary=null", "callbacks.learning_rate=null"]
    return Path(train(compose_config("train", run_dir, [*overrides, *callbacks]))["best_checkpoint"])


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The first test-split digits as the 8x8 grey PNG files they were scanned as (16 grey levels to 0-255)."""
    folder = tmp_path_factory.mktemp("digits")
    native = DigitsDataModule(image_size=8, normalize="none")  # the same split, before resizing
    native.setup()
    files = []
    for index, image in enumerate(native.test_set.images[:IMAGES]):
        files.append(folder / f"{index:03d}.png")
        Image.fromarray((image[0] * 255).round().to(torch.uint8).numpy(), mode="L").save(files[-1])
    return files


def predict_config(tmp_path: Path, *overrides: str):
    return compose_config("predict", tmp_path, list(overrides))


def test_load_model_gives_the_network_in_eval_mode_with_its_preprocessing(checkpoint: Path) -> None:
    model = load_model(checkpoint)
    assert type(model.net).__name__ == "LeNet5" and not model.net.training
    assert (model.in_channels, model.input_size) == (1, (32, 32))
    assert model.class_names == [str(digit) for digit in range(10)]
    stored = torch.load(checkpoint, weights_only=True)
    assert torch.equal(model.normalizer.mean, stored["normalizer"]["mean"])
    batch = model.preprocess([Image.new("RGB", (50, 30), "white"), Image.new("L", (8, 8))])
    assert batch.shape == (2, 1, 32, 32)
    assert torch.allclose(model.probabilities(batch).sum(dim=-1), torch.ones(2))


def test_predictions_on_png_files_match_the_test_set_path(checkpoint: Path, digit_files: list[Path], tmp_path) -> None:
    run_config = torch.load(checkpoint, weights_only=True)["hyper_parameters"]["run_config"]
    datamodule = instantiate(OmegaConf.create(run_config).data, "data")
    datamodule.setup("test")
    inputs, _ = model_inputs(datamodule, "test")
    model = load_model(checkpoint)
    with torch.no_grad():
        expected = model.net(inputs[:IMAGES]).softmax(dim=-1)

    predictions = predict(
        predict_config(tmp_path, f"ckpt_path={checkpoint}", f"inputs={digit_files[0].parent}", "top_k=10")
    )
    assert [prediction["image"] for prediction in predictions] == [str(path) for path in digit_files]
    for prediction, reference in zip(predictions, expected, strict=True):
        top = prediction["top"]
        assert top[0]["index"] == reference.argmax().item()
        assert [entry["class"] for entry in top] == [str(entry["index"]) for entry in top]
        assert sum(entry["probability"] for entry in top) == pytest.approx(1.0, abs=1e-5)
        probabilities = torch.tensor([entry["probability"] for entry in sorted(top, key=lambda e: e["index"])])
        # 8-bit PNG levels (k/255) approximate the scans' 16 levels (v/16) to within 1/510
        assert torch.allclose(probabilities, reference, atol=0.02)
    assert json.loads((tmp_path / "predictions.json").read_text()) == predictions


def test_any_mode_and_size_is_converted_as_the_model_needs(checkpoint: Path, digit_files, tmp_path: Path) -> None:
    grey = Image.open(digit_files[0])
    pixels = np.asarray(grey)
    variants = {
        "rgba.png": Image.fromarray(np.stack([pixels] * 3 + [np.full_like(pixels, 255)], axis=-1), mode="RGBA"),
        "palette.png": grey.convert("P"),
        "rgb.jpg": grey.convert("RGB").resize((64, 64), Image.Resampling.NEAREST),
    }
    for name, image in variants.items():
        image.save(tmp_path / name)
    inputs = [str(digit_files[0]), *(str(tmp_path / name) for name in variants)]
    predictions = predict(predict_config(tmp_path / "run", f"ckpt_path={checkpoint}", f"inputs=[{','.join(inputs)}]"))
    assert len(predictions) == 4 and all(len(prediction["top"]) == 5 for prediction in predictions)
    assert predictions[1]["top"] == predictions[0]["top"] == predictions[2]["top"]  # the same grey pixels
    assert predictions[3]["top"][0]["class"] == predictions[0]["top"][0]["class"]


def test_16_bit_copies_of_the_digits_are_predicted_as_the_8_bit_ones(checkpoint: Path, digit_files, tmp_path) -> None:
    eight_bit, sixteen_bit = digit_files[:20], []
    for path in eight_bit:  # 16-bit PNG and PGM files, v * 257 for each 8-bit value v (0..255 to 0..65535)
        pixels = np.asarray(Image.open(path)).astype("<u2") * 257
        sixteen_bit.append(tmp_path / f"{path.stem}{'.png' if len(sixteen_bit) % 2 else '.pgm'}")
        Image.frombytes("I;16", (8, 8), pixels.tobytes()).save(sixteen_bit[-1])
    model = load_model(checkpoint)
    for eight, sixteen in zip(eight_bit, sixteen_bit, strict=True):
        assert torch.equal(model.transform(open_image(sixteen)), model.transform(open_image(eight)))
    expected = predict(
        predict_config(tmp_path / "8", f"ckpt_path={checkpoint}", f"inputs=[{','.join(map(str, eight_bit))}]")
    )
    seen = predict(
        predict_config(tmp_path / "16", f"ckpt_path={checkpoint}", f"inputs=[{','.join(map(str, sixteen_bit))}]")
    )
    assert [prediction["top"] for prediction in seen] == [prediction["top"] for prediction in expected]
    assert len({prediction["top"][0]["class"] for prediction in seen}) > 3  # not one class for every image


def test_unreadable_images_are_named_and_the_others_predicted(
    checkpoint: Path, digit_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    good = [Path(shutil.copy(path, folder / f"a{index}.png")) for index, path in enumerate(digit_files[:2])]
    (folder / "b_truncated.png").write_bytes(digit_files[0].read_bytes()[:60])
    (folder / "c_text.png").write_text("not an image\n")
    write_decompression_bomb(folder / "d_bomb.png")
    Image.fromarray(np.zeros((8, 8), np.float32)).save(folder / "e_float.tiff")
    capsys.readouterr()
    with pytest.raises(UserError) as info:  # batches of 2: the second and third hold no readable image
        predict(predict_config(tmp_path / "run", f"ckpt_path={checkpoint}", f"inputs={folder}", "batch_size=2"))
    output = tmp_path / "run" / "predictions.json"
    assert str(info.value) == (
        f"inputs: 4 of 6 images could not be read (each is named above); the other 2 are predicted in {output}"
    )
    assert [prediction["image"] for prediction in json.loads(output.read_text())] == [str(path) for path in good]
    captured = capsys.readouterr()
    assert len(re.findall(r"\s1\s+\d\s+0\.\d{4}", captured.out)) == 2  # the table's rows of rank 1
    lines = captured.err.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"cannot read {folder / 'b_truncated.png'}: ")
    assert lines[1] == f"cannot read {folder / 'c_text.png'}: not an image format PIL recognises (or a damaged header)"
    assert lines[2] == (
        f"cannot read {folder / 'd_bomb.png'}: DecompressionBombError: Image size (900000000 pixels) exceeds limit of "
        f"{2 * Image.MAX_IMAGE_PIXELS} pixels, could be decompression bomb DOS attack."
    )
    assert lines[3] == (
        f"cannot read {folder / 'e_float.tiff'}: 32-bit floating-point pixels (PIL mode F) have no fixed range to map "
        "to 0..255; save it as an 8- or 16-bit image (PNG, for example)"
    )


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda tmp: tmp / "missing.png", "inputs: no such file or folder: {path}"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "inputs: no images (.jpg, .jpeg, .png"),
        (
            lambda tmp: (tmp / "bad.png").write_bytes(b"not a png") and tmp / "bad.png",
            "inputs: cannot read {path}: not an image format PIL recognises (or a damaged header)",
        ),
    ],
    ids=["missing", "no-images", "unreadable"],
)
def test_bad_inputs_are_one_clear_line(checkpoint: Path, tmp_path: Path, make_input, message: str) -> None:
    path = make_input(tmp_path)
    with pytest.raises(UserError, match=re.escape(message.format(path=path))):
        predict(predict_config(tmp_path / "run", f"ckpt_path={checkpoint}", f"inputs={path}"))


def test_a_file_that_is_not_a_checkpoint_is_refused(digit_files: list[Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^ckpt_path is required: give it on the command line, ckpt_path=\.\.\.$"):
        predict(predict_config(tmp_path, f"inputs={digit_files[0]}"))
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(UserError, match=r"notes\.ckpt is not a readable PyTorch checkpoint"):
        predict(predict_config(tmp_path, f"ckpt_path={tmp_path / 'notes.ckpt'}", f"inputs={digit_files[0]}"))


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_file_that_holds_code_is_refused_and_its_code_never_runs(
    digit_files: list[Path], tmp_path: Path, writer: str
) -> None:
    marker = tmp_path / "marker"
    path = WRITERS[writer](tmp_path / "evil.ckpt", marker)  # a torch.save file, or a plain pickle
    with pytest.raises(UserError, match=re.escape(f"{path} {REFUSAL}")):
        predict(predict_config(tmp_path, f"ckpt_path={path}", f"inputs={digit_files[0]}"))
    with pytest.raises(UserError, match=re.escape(REFUSAL)):
        load_model(path)
    assert not marker.exists()


def test_the_script_prints_a_table_and_bad_input_is_one_line(checkpoint: Path, digit_files, tmp_path: Path) -> None:
    result = run_script("predict.py", f"ckpt_path={checkpoint}", f"inputs={digit_files[0]}", "top_k=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [
        line.split() for line in result.stdout.splitlines() if re.match(r"^\s*(\S+\s+)?[123]\s+\d\s+0\.\d{4}", line)
    ]
    assert [row[-3] for row in rows] == ["1", "2", "3"] and rows[0][0] == str(digit_files[0])
    result = run_script("predict.py", f"ckpt_path={checkpoint}", f"inputs={tmp_path / 'nope.png'}", cwd=tmp_path)
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: inputs: no such file or folder: {tmp_path / 'nope.png'}"
    ]
    assert "Traceback" not in result.stderr
