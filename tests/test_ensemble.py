"""scripts/eval.py ckpt_path=[a,b,c]: an ensemble of classifiers, the mean of their softmax outputs."""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn import functional as F

from conftest import compose_config, model_inputs, run_script
from training.classifier import Classifier
from training.config import UserError
from training.tasks import ProbabilityRecorder, build, ensemble_predictions, evaluate, train

FAST = [
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "logger=none",
    "callbacks.learning_rate=null",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three LeNet-5s, one epoch on the digits each, with different seeds."""
    root = tmp_path_factory.mktemp("members")
    runs = [train(compose_config("train", root / f"seed{seed}", [*FAST, f"seed={seed}"])) for seed in (1, 2, 3)]
    return [run["best_checkpoint"] for run in runs]


def softmax_on_test_set(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A member's class probabilities on its test split, computed here from its checkpoint, and the labels."""
    checkpoint = torch.load(path, weights_only=True)
    datamodule, module = build(OmegaConf.create(checkpoint["hyper_parameters"]["run_config"]))
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    images, labels = model_inputs(datamodule, "test")
    with torch.no_grad():
        return module(images).softmax(dim=-1), labels


def eval_config(tmp_path: Path, paths: list[str]) -> DictConfig:
    tmp_path.mkdir(exist_ok=True)
    return compose_config("eval", tmp_path, [f"ckpt_path=[{','.join(paths)}]", "trainer.accelerator=cpu"])


def test_each_members_probabilities_are_its_softmax_on_the_test_set(members: list[str], tmp_path: Path) -> None:
    probabilities, labels, results = ensemble_predictions(eval_config(tmp_path, members), members)
    expected = [softmax_on_test_set(path) for path in members]
    assert probabilities.shape == (3, 360, 10)
    for (member_probabilities, member_labels), recorded in zip(expected, probabilities, strict=True):
        torch.testing.assert_close(recorded, member_probabilities, rtol=1e-5, atol=1e-6)
        assert torch.equal(labels, member_labels)
    assert [result["checkpoint"] for result in results] == members
    assert not torch.allclose(probabilities[0], probabilities[1], atol=1e-3)  # the seeds made different members


def test_eval_reports_the_ensemble_and_each_member(members: list[str], tmp_path: Path) -> None:
    metrics = evaluate(eval_config(tmp_path, members))
    outputs = [softmax_on_test_set(path) for path in members]
    labels = outputs[0][1]
    mean = torch.stack([probabilities for probabilities, _ in outputs]).mean(dim=0)
    assert metrics["test/loss"] == pytest.approx(F.nll_loss(mean.log(), labels).item(), rel=1e-5)
    assert metrics["test/acc"] == pytest.approx((mean.argmax(dim=-1) == labels).float().mean().item())
    assert metrics["test/acc_top5"] == pytest.approx((mean.topk(5).indices == labels[:, None]).any(-1).float().mean())
    for member, (probabilities, _) in zip(metrics["members"], outputs, strict=True):
        assert member["test/acc"] == pytest.approx((probabilities.argmax(dim=-1) == labels).float().mean().item())
        assert member["test/loss"] == pytest.approx(F.nll_loss(probabilities.log(), labels).item(), rel=1e-5)
    # averaging probabilities is not averaging losses: the ensemble's cross-entropy is below the members' mean
    assert metrics["test/loss"] < sum(member["test/loss"] for member in metrics["members"]) / 3 - 1e-3
    assert metrics["test/acc"] > 0.5
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics


def test_an_ensemble_builds_no_optimizer_and_reads_the_test_data_only(
    members: list[str], tmp_path: Path, built
) -> None:
    metrics = evaluate(eval_config(tmp_path, members[:2]))
    assert built["optimizers"] == [] and set(built["stages"]) == {"test"}
    assert [member["checkpoint"] for member in metrics["members"]] == members[:2]


def test_the_recorder_keeps_the_softmax_averaged_over_k_crops() -> None:
    logits = torch.randn(6, 4)
    module = Classifier(nn.Flatten(), optimizer=None, num_classes=4)
    batch = (logits.view(2, 3, 1, 1, 4), torch.tensor([0, 3]))  # two images of three crops: the net gives the logits
    recorder = ProbabilityRecorder()
    recorder.on_test_batch_end(None, module, module.test_step(batch, 0), batch, 0)
    torch.testing.assert_close(recorder.probabilities[0], logits.softmax(dim=-1).view(2, 3, 4).mean(dim=1))
    assert recorder.labels[0].tolist() == [0, 3]


def test_a_single_checkpoint_in_a_list_is_evaluated_as_before(members: list[str], tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    single = evaluate(compose_config("eval", tmp_path / "one", [f"ckpt_path={members[0]}", "trainer.accelerator=cpu"]))
    listed = evaluate(eval_config(tmp_path / "list", members[:1]))
    assert single == listed
    assert single["checkpoint"] == members[0] and "members" not in single


def with_data_setting(path: str, tmp_path: Path, key: str, value) -> str:
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["run_config"]["data"][key] = value
    changed = tmp_path / f"{key}.ckpt"
    torch.save(checkpoint, changed)
    return str(changed)


def test_members_may_differ_in_how_they_are_fed(members: list[str], tmp_path: Path) -> None:
    bigger_batches = with_data_setting(members[1], tmp_path, "batch_size", 100)
    metrics = evaluate(eval_config(tmp_path, [members[0], bigger_batches]))
    assert [member["checkpoint"] for member in metrics["members"]] == [members[0], bigger_batches]


@pytest.mark.parametrize(("key", "value"), [("split_seed", 1), ("num_classes", 9), ("_target_", "data.FakeDataModule")])
def test_members_must_share_the_data_set(members: list[str], tmp_path: Path, key: str, value) -> None:
    other = with_data_setting(members[1], tmp_path, key, value)
    with pytest.raises(UserError) as raised:
        evaluate(eval_config(tmp_path, [members[0], other]))
    original = torch.load(members[0], weights_only=True)["hyper_parameters"]["run_config"]["data"][key]
    assert str(raised.value) == (
        f"ensemble members must share the data set: {members[0]} has data.{key}={original!r}, "
        f"{other} has data.{key}={value!r}"
    )


def test_members_must_be_classifiers(tmp_path: Path) -> None:
    overrides = [*FAST, "experiment=lenet5_digits_attributes", "+trainer.limit_train_batches=2", "test=false"]
    path = train(compose_config("train", tmp_path / "multilabel", overrides))["last_checkpoint"]
    with pytest.raises(
        UserError, match=r"an ensemble averages class probabilities: .* is a MultiLabelClassifier checkpoint"
    ):
        evaluate(eval_config(tmp_path, [path, path]))


def test_the_script_refuses_a_missing_member_in_one_line(members: list[str], tmp_path: Path) -> None:
    missing = tmp_path / "missing.ckpt"
    done = run_script("eval.py", f"ckpt_path=[{members[0]},{missing}]", cwd=tmp_path)
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if line.strip()] == [f"error: checkpoint not found: {missing}"]
    assert not list(tmp_path.rglob("metrics.json"))
