"""The monitoring callbacks: what a short run writes to TensorBoard, and the computations behind it."""

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger as LightningTensorBoardLogger
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import grad_norm
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from conftest import compose_config, model_inputs, run_script
from training.classifier import Classifier
from training.config import UserError
from training.monitoring import (
    ConfusionMatrix,
    FilterImages,
    GradientNorm,
    MisclassifiedImages,
    TensorBoardLogger,
    confusion_matrix_image,
    dead_fraction,
    display_images,
    filter_grid,
    histogram,
    misclassified_image,
)
from training.tasks import build, train

# LeNet-5 with ReLU: the modules hooked, the rectifiers among them, and the parameters
LAYERS = [f"features.{name}" for name in ("c1", "act1", "c3", "act3", "c5", "act5", "f6", "act6")] + ["classifier"]
RECTIFIERS = [f"features.act{index}" for index in (1, 3, 5, 6)]
PARAMETERS = [f"{layer}.{kind}" for layer in ("features.c1", "features.c3", "features.c5", "features.f6", "classifier")
              for kind in ("weight", "bias")]  # fmt: skip
FAST = ["trainer.accelerator=cpu", "callbacks.progress_bar=null", "callbacks.model_summary=null"]


def read_events(log_dir: str) -> EventAccumulator:
    events = EventAccumulator(log_dir, size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> EventAccumulator:
    """Two epochs of 6 batches of 32 digits, Lightning and the layer statistics logging every 2 steps."""
    cfg = compose_config(
        "train",
        tmp_path_factory.mktemp("monitored"),
        [
            *FAST,
            "activation=relu",
            "trainer.max_epochs=2",
            "+trainer.limit_train_batches=6",
            "trainer.log_every_n_steps=2",
            "callbacks.layer_stats.every_n_steps=2",
        ],
    )
    return read_events(train(cfg)["tensorboard_dir"])


def test_the_event_file_is_flushed_at_most_every_flush_secs_and_whole_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = TensorBoardLogger(tmp_path, name="tb", version="", flush_secs=3600)
    flushes = []
    monkeypatch.setattr(logger.experiment, "flush", lambda: flushes.append(1))
    for step in range(5):  # as Lightning logs: log_metrics, then save
        logger.log_metrics({"train/loss": 1.0 / (step + 1)}, step)
        logger.save()
    assert len(flushes) == 1  # the first save (which writes hparams.yaml too), then none within the hour
    assert (Path(logger.log_dir) / "hparams.yaml").is_file()
    monkeypatch.undo()
    logger.finalize("success")
    assert [event.step for event in read_events(logger.log_dir).Scalars("train/loss")] == [0, 1, 2, 3, 4]


def values(events: EventAccumulator, tag: str) -> list[float]:
    return [event.value for event in events.Scalars(tag)]


def test_speed_and_gradient_norm_scalars(events: EventAccumulator) -> None:
    assert len(values(events, "time/epoch_seconds")) == 2
    assert all(0 < seconds < 60 for seconds in values(events, "time/epoch_seconds"))
    assert all(10 < rate < 1e6 for rate in values(events, "time/samples_per_second"))
    norms = events.Scalars("train/grad_norm")
    assert [event.step for event in norms] == [1, 3, 5, 7, 9, 11]  # the steps Lightning logs train/loss_step at
    assert [event.step for event in events.Scalars("train/loss_step")] == [1, 3, 5, 7, 9, 11]
    assert all(0 < event.value < 100 and math.isfinite(event.value) for event in norms)


def test_the_gradient_norm_is_lightnings_total_norm_read_once_on_the_logging_steps() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2, bias=False))
    net(torch.randn(5, 4)).square().sum().backward()
    net[0].bias.grad = None  # a parameter without a gradient is left out
    written = []
    logger = SimpleNamespace(log_metrics=lambda metrics, step: written.append((step, metrics)))
    for step in (3, 4):  # logging every 5 steps: step 4 logs
        trainer = SimpleNamespace(log_every_n_steps=5, global_step=step, loggers=[logger])
        GradientNorm().on_before_optimizer_step(trainer, net, None)
    expected = grad_norm(net, norm_type=2)["grad_2.0_norm_total"].item()
    assert written == [(4, {"train/grad_norm": pytest.approx(expected, rel=1e-6)})]


def test_layer_statistics_at_the_first_step_and_every_n_steps_with_the_losses(events: EventAccumulator) -> None:
    scalars = set(events.Tags()["scalars"])
    for layer in LAYERS:
        assert {f"activations/{layer}/mean", f"activations/{layer}/std"} <= scalars
        # the steps train/loss_step is logged at (1, 3, ...: Lightning's logging steps), and the first
        assert [event.step for event in events.Scalars(f"activations/{layer}/mean")] == [0, 1, 3, 5, 7, 9, 11]
        assert all(value > 0 for value in values(events, f"activations/{layer}/std"))
    # rectifiers only; after a ReLU the mean is positive
    assert {tag for tag in scalars if tag.startswith("dead_fraction/")} == {f"dead_fraction/{a}" for a in RECTIFIERS}
    for layer in RECTIFIERS:
        assert all(0.0 <= value <= 1.0 for value in values(events, f"dead_fraction/{layer}"))
        assert all(value > 0 for value in values(events, f"activations/{layer}/mean"))
    assert {tag for tag in scalars if tag.startswith("update_ratio/")} == {f"update_ratio/{p}" for p in PARAMETERS}
    for parameter in PARAMETERS:
        ratios = values(events, f"update_ratio/{parameter}")
        assert len(ratios) == 7 and all(1e-6 < ratio < 1 and math.isfinite(ratio) for ratio in ratios)


def test_weight_gradient_and_activation_histograms(events: EventAccumulator) -> None:
    tags = set(events.Tags()["histograms"])
    expected = {f"weights/{p}" for p in PARAMETERS} | {f"gradients/{p}" for p in PARAMETERS}
    assert tags == expected | {f"activations/{layer}" for layer in LAYERS}
    conv1 = events.Histograms("weights/features.c1.weight")[0].histogram_value
    assert conv1.num == 6 * 1 * 5 * 5 and sum(conv1.bucket) == conv1.num  # every weight, in the buckets
    assert conv1.min < 0 < conv1.max and conv1.bucket_limit[-1] == pytest.approx(conv1.max)
    act1 = events.Histograms("activations/features.act1")[0].histogram_value
    assert act1.num == 32 * 6 * 28 * 28 and act1.min == 0.0  # the whole batch's ReLU outputs
    assert len(events.Histograms("gradients/classifier.bias")) == 7


def test_filter_grid_confusion_matrix_and_misclassified_images(events: EventAccumulator) -> None:
    images = set(events.Tags()["images"])
    assert images == {"filters/features.c1", "val/confusion_matrix", "val/misclassified"}
    filters = events.Images("filters/features.c1")
    assert [event.step for event in filters] == [0, 12]  # at the start and after the last epoch (epoch 2 of 2)
    # six 5x5 filters enlarged 7 times to 35x35, in one row with 1-pixel borders
    assert (filters[0].width, filters[0].height) == (6 * 36 + 1, 36 + 1)
    assert filters[0].encoded_image_string != filters[-1].encoded_image_string  # they learnt
    for tag in ("val/confusion_matrix", "val/misclassified"):
        # every 5th epoch's and the last one's validation (epoch 2 of 2), not the sanity check
        assert [event.step for event in events.Images(tag)] == [12]
        assert min(events.Images(tag)[0].width, events.Images(tag)[0].height) > 200


@pytest.mark.parametrize(("epochs_run", "steps"), [(5, [0, 20, 40, 50]), (3, [0, 20, 30])])
def test_filters_at_the_start_every_n_epochs_the_last_and_an_early_end(
    tmp_path: Path, epochs_run: int, steps: list[int]
) -> None:
    logger = LightningTensorBoardLogger(tmp_path, name="tb", version="")
    net = nn.Sequential(nn.Conv2d(1, 2, 3))
    filters = FilterImages(every_n_epochs=2)
    trainer = SimpleNamespace(is_global_zero=True, loggers=[logger], global_step=0, current_epoch=0, max_epochs=5)
    filters.on_train_start(trainer, net)
    for epoch in range(epochs_run):  # 10 steps an epoch; 3 of 5: stopped early (early stopping)
        trainer.current_epoch, trainer.global_step = epoch, 10 * (epoch + 1)
        filters.on_train_epoch_end(trainer, net)
    filters.on_train_end(trainer, net)
    logger.experiment.flush()
    assert [event.step for event in read_events(str(tmp_path / "tb")).Images("filters/0")] == steps
    with pytest.raises(ValueError, match="every_n_epochs must be a positive integer, got 0"):
        FilterImages(every_n_epochs=0)


@pytest.mark.parametrize("callback", [ConfusionMatrix, MisclassifiedImages])
def test_figures_every_n_epochs_and_the_last(callback: type) -> None:
    figures = callback(every_n_epochs=2)

    def due(epoch: int, fn: TrainerFn = TrainerFn.FITTING, sanity_checking: bool = False) -> bool:
        state = SimpleNamespace(fn=fn)
        trainer = SimpleNamespace(sanity_checking=sanity_checking, state=state, current_epoch=epoch, max_epochs=5)
        return figures._due(trainer)

    assert [epoch + 1 for epoch in range(5) if due(epoch)] == [2, 4, 5]
    assert not due(1, sanity_checking=True)
    assert due(0, fn=TrainerFn.VALIDATING)  # trainer.validate draws them always
    with pytest.raises(ValueError, match="every_n_epochs must be a positive integer, got 0"):
        callback(every_n_epochs=0)


def test_hparams_entry_holds_the_choices_and_final_metrics(events: EventAccumulator) -> None:
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    for choice in (b"lenet5", b"digits", b"optimizer/lr", b"data/batch_size"):
        assert choice in start
    final = {tag: values(events, tag)[-1] for tag in events.Tags()["scalars"] if tag.startswith("hp/")}
    assert {"hp/val/acc_best", "hp/test/acc", "hp/test/loss"} <= set(final)
    # twelve steps: near chance still, the loss near ln 10
    assert 0 <= final["hp/test/acc"] <= 1 and 0 < final["hp/test/loss"] < 3 * math.log(10)


@pytest.fixture
def validated(
    tmp_path: Path,
) -> tuple[pl.LightningDataModule, pl.LightningModule, ConfusionMatrix, MisclassifiedImages]:
    """An untrained LeNet-5 validated on the digits with the two classifier callbacks."""
    datamodule, module = build(compose_config("train", tmp_path, FAST))
    matrix, misclassified = ConfusionMatrix(), MisclassifiedImages(max_images=5)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=LightningTensorBoardLogger(tmp_path, name="tb"),  # Lightning's own logger works as well as ours
        callbacks=[matrix, misclassified],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, datamodule=datamodule)
    return datamodule, module, matrix, misclassified


def test_confusion_matrix_counts_every_validation_example_as_predicted(validated) -> None:
    datamodule, module, matrix, misclassified = validated
    images, labels = model_inputs(datamodule, "val")
    with torch.no_grad():
        predictions = module.eval()(images).argmax(dim=-1)
    counts = matrix.matrix.compute()
    assert counts.sum() == len(datamodule.val_set) == len(labels) == 180
    expected = torch.bincount(labels * 10 + predictions, minlength=100).view(10, 10)
    assert torch.equal(counts.cpu(), expected)
    wrong = (predictions != labels).nonzero().squeeze(1)[:5]
    assert misclassified.true == labels[wrong].tolist() and misclassified.predicted == predictions[wrong].tolist()
    assert len(misclassified.images) == 5 and all(image.shape == (1, 32, 32) for image in misclassified.images)


def test_validation_step_scores_k_crops_by_their_averaged_softmax() -> None:
    logits = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    module = Classifier(nn.Flatten(), optimizer=None, num_classes=2)
    crops = logits.view(2, 2, 1, 1, 2)  # two examples of two crops (B, K, C, H, W): the net's outputs are the logits
    scores = module.validation_step((crops, torch.tensor([0, 1])), 0)
    # softmax means (0.62, 0.38) and (0.48, 0.52); mean logits would say (1.0, 0.5)
    assert scores.argmax(dim=-1).tolist() == [0, 1]
    assert torch.allclose(scores.exp(), logits.softmax(dim=-1).view(2, 2, 2).mean(dim=1))


def test_filter_grid_scales_each_filter_and_shows_channels() -> None:
    weight = torch.randn(6, 1, 5, 5) * torch.arange(1, 7).view(6, 1, 1, 1)
    grid = filter_grid(weight)
    assert grid.shape == (3, 37, 6 * 36 + 1)
    first = grid[0, 1:36, 1:36]
    assert first.min() == 0.0 and first.max() == 1.0
    assert filter_grid(torch.randn(16, 3, 3, 3)).shape == (3, 2 * 34 + 1, 8 * 34 + 1)  # RGB, 8 to a row
    assert filter_grid(torch.randn(2, 4, 3, 3)).shape == (3, 2 * 34 + 1, 4 * 34 + 1)  # a row of 4 channels each


def test_display_images_scale_each_input_and_show_sequences_and_crops() -> None:
    images = display_images(torch.randn(2, 3, 8, 8) * 5 + 3)
    assert images.shape == (2, 3, 8, 8)
    assert images.amin(dim=(1, 2, 3)).tolist() == [0, 0] and images.amax(dim=(1, 2, 3)).tolist() == [1, 1]
    assert display_images(torch.randn(2, 4, 8, 8)).shape == (2, 1, 8, 8)  # the first channel in grey
    assert display_images(torch.randn(2, 28, 14)).shape == (2, 1, 28, 14)  # a sequence of 28 steps
    crops = torch.randn(2, 10, 3, 8, 8)
    assert torch.equal(display_images(crops), display_images(crops[:, 0]))


def test_confusion_matrix_image_colours_each_cell_by_its_share_of_the_row() -> None:
    matrix = torch.tensor([[3, 1, 0], [0, 0, 0], [0, 2, 2]])
    image = confusion_matrix_image(matrix, ["cat", "dog", "a very long class name" * 5])
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    blue, white = np.array([8, 48, 107]), np.array([247, 251, 255])
    top = image.shape[0] - 4 - 3 * 28  # three rows of 28-pixel cells, 4 pixels above the bottom edge
    first = np.abs(image[top + 1].astype(int) - (white + 0.75 * (blue - white))).max(axis=1) <= 1
    corner = (top, int(first.argmax()) - 1)  # the first cell's left edge
    for (row, column), share in {(0, 0): 0.75, (0, 1): 0.25, (0, 2): 0.0, (1, 1): 0.0, (2, 1): 0.5}.items():
        edge = image[corner[0] + row * 28 + 1, corner[1] + column * 28 + 1]  # a cell's corner: no digit there
        assert np.abs(edge - (white + share * (blue - white))).max() <= 1, (row, column)

    # a count is drawn in each non-empty cell (white on the dark one, dark on the light ones), none in empty ones
    def ink(row: int, column: int) -> np.ndarray:
        top, left = corner[0] + row * 28, corner[1] + column * 28
        return image[top + 4 : top + 24, left + 4 : left + 24].reshape(-1, 3)

    assert (ink(0, 0).min(axis=1) > 200).any() and (ink(0, 1).max(axis=1) < 120).any()
    assert len(np.unique(ink(0, 2), axis=0)) == 1 and len(np.unique(ink(1, 0), axis=0)) == 1
    # the class names and the title take the margins: ink left of and above the matrix
    assert (image[corner[0] :, : corner[1] - 2] < 128).any() and (image[: corner[0] - 2, corner[1] :] < 128).any()
    assert image.shape[1] < 3 * 28 + 200  # a long name is cut


def test_confusion_matrix_image_of_many_classes_has_no_counts_or_names() -> None:
    matrix = torch.eye(50, dtype=torch.long) * 7
    image = confusion_matrix_image(matrix, [str(index) for index in range(50)])
    side = 800 // 50  # pixels a cell
    assert image.shape[1] == 50 * side + 8  # no names at the left
    cells = image[-4 - 50 * side : -4, 4 : 4 + 50 * side]
    assert np.array_equal(cells[::side, ::side].reshape(-1, 3)[0], [8, 48, 107])  # the diagonal, full blue
    assert len(np.unique(cells[:side, :side].reshape(-1, 3), axis=0)) == 1  # no count drawn in it


def test_misclassified_image_shows_each_input_enlarged_under_its_labels() -> None:
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    image = misclassified_image(images, [1, 2, 0], [0, 0, 1], ["zero", "one", "two"], columns=2)
    scale, label = 6, 30  # 16 pixels enlarged 6 times to 96; two lines of labels above each
    assert image.shape == (2 * (96 + label + 8) + 8, 2 * (96 + 8) + 8, 3)
    for index in range(3):
        row, column = divmod(index, 2)
        top, left = 8 + row * (96 + label + 8), 8 + column * (96 + 8)
        shown = image[top + label : top + label + 96, left : left + 96, 0]
        expected = (images[index, 0] * 255).round().to(torch.uint8).repeat_interleave(scale, 0)
        assert np.array_equal(shown, expected.repeat_interleave(scale, 1).numpy())
        assert (image[top : top + label, left : left + 96] < 128).any()  # its labels
    assert (image[8 + 96 + label + 8 :, 8 + 96 + 8 :] == 255).all()  # the fourth place stays white
    wide = misclassified_image(torch.rand(1, 3, 200, 120), [0], [0], ["a name far too long to fit " * 9])
    assert wide.shape == (200 + label + 16, 120 + 16, 3)  # wide enough already: not enlarged, the labels cut


def test_histogram_of_finite_values() -> None:
    result = histogram(torch.tensor([[0.0, 1.0], [1.0, 4.0]]), bins=4)
    assert [result[key] for key in ("min", "max", "num", "sum", "sum_squares")] == [0, 4, 4, 6, 18]
    # an empty bucket up to the least value, then [0, 1), [1, 2), [2, 3), [3, 4] each under its right limit
    assert result["bucket_limits"] == [0.0, 1.0, 2.0, 3.0, 4.0] and result["bucket_counts"] == [0, 1, 2, 0, 1]
    with_nan = histogram(torch.tensor([1.0, float("nan"), float("inf"), 3.0]), bins=2)
    assert with_nan["num"] == 2 and with_nan["bucket_counts"] == [0, 1, 1]
    assert histogram(torch.zeros(3), bins=2)["bucket_limits"] == [-0.5, 0.0, 0.5]
    assert histogram(torch.tensor([float("nan")])) is None


def test_dead_fraction_counts_channels_never_positive() -> None:
    outputs = torch.zeros(4, 3, 2, 2)
    outputs[2, 1, 0, 1] = 0.5  # channel 1 fires once, channel 2 never, channel 0 is negative
    outputs[:, 0] = -1.0
    outputs[:, 2] = 0.0
    assert dead_fraction(outputs).item() == pytest.approx(2 / 3)
    assert dead_fraction(torch.tensor([[1.0, 0.0], [0.0, 0.0]])).item() == 0.5


SHORT = ["trainer.max_epochs=1", "+trainer.limit_train_batches=3", "trainer.log_every_n_steps=1",
         "callbacks.layer_stats.every_n_steps=1"]  # fmt: skip


def test_nothing_breaks_without_a_logger(train_config) -> None:
    # Lightning's LearningRateMonitor refuses to run without a logger; the monitoring callbacks do nothing
    summary = train(train_config("logger=none", "callbacks.learning_rate=null", *SHORT))
    assert summary["tensorboard_dir"] is None and not list(Path(summary["output_dir"]).rglob("events.out.*"))


def test_csv_gets_the_scalars_logged_through_lightning(train_config) -> None:
    summary = train(train_config("logger=csv", *SHORT))
    with open(Path(summary["output_dir"]) / "csv" / "metrics.csv") as file:
        columns = set(next(csv.reader(file)))
    assert {"train/grad_norm", "time/epoch_seconds", "time/samples_per_second"} <= columns


def test_a_regressor_without_conv_layers_gets_the_statistics_that_apply(train_config) -> None:
    assert train(train_config("experiment=gru_adding", "debug=fdr"))["test/loss"] >= 0  # no logger at all
    cfg = train_config(
        "experiment=gru_adding", "data.seq_len=10", "data.train_size=100", "data.val_size=50", "data.test_size=50",
        "trainer.max_epochs=1", "trainer.log_every_n_steps=1", "callbacks.layer_stats.every_n_steps=1",
    )  # fmt: skip
    events = read_events(train(cfg)["tensorboard_dir"])
    assert not events.Tags()["images"]  # no filters, no confusion matrix
    scalars = set(events.Tags()["scalars"])
    assert {"train/grad_norm", "time/samples_per_second"} <= scalars
    assert {"activations/rnn/std", "activations/head/std", "update_ratio/rnn.weight_hh_l0"} <= scalars
    assert {"activations/rnn", "weights/rnn.weight_hh_l0", "gradients/head.weight"} <= set(events.Tags()["histograms"])
    hidden = events.Histograms("activations/rnn")[0].histogram_value  # the GRU's hidden states
    assert hidden.num == 50 * 10 * 128 and -1 <= hidden.min < hidden.max <= 1


def test_a_bad_setting_is_named(train_config) -> None:
    with pytest.raises(UserError, match=r"^callbacks.layer_stats.every_n_steps: expected 1 or more, got 0$"):
        train(train_config("callbacks.layer_stats.every_n_steps=0", "debug=fdr"))


@pytest.mark.slow
def test_benchmark_script_compares_both_sides(tmp_path: Path) -> None:
    result = run_script("benchmark_monitoring.py", "epochs=2", "rounds=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = [line for line in result.stdout.splitlines() if line.startswith("| LeNet-5")]
    assert len(row.split("|")) == 9 and row.count("%") == 2
    bad = run_script("benchmark_monitoring.py", "rounds=0", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: expected key=positive integer")
    bad = run_script("benchmark_monitoring.py", "epochs=1", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: epochs: the first epoch is not timed")
