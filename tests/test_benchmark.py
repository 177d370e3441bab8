"""scripts/benchmark.py with tiny settings: the shape of its tables (the timings belong in docs/benchmarks.md)."""

import importlib
from pathlib import Path

import pytest

from conftest import ROOT, run_script


def tables(output: str) -> list[list[list[str]]]:
    """The markdown tables of the output, each a list of rows of cells (the separator rows left out)."""
    found: list[list[list[str]]] = []
    previous_was_row = False
    for line in output.splitlines():
        is_row = line.startswith("|")
        if is_row and not line.startswith("|---"):
            if not previous_was_row:
                found.append([])
            found[-1].append([cell.strip() for cell in line.strip("|").split("|")])
        previous_was_row = is_row
    return found


def test_benchmark_prints_one_table_per_part(tmp_path: Path) -> None:
    result = run_script(
        "benchmark.py", "parts=a,b,c", "models=resnet18", "batch=2", "steps=2", "epochs=2", "rounds=1",
        "data_batches=2", "data_batch=16", "workers=1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    vs_torchvision, vs_minimal, data_paths = tables(result.stdout)
    assert vs_torchvision[0][:4] == ["model", "train img/s ours", "torchvision", "ours/tv"]
    assert [row[0] for row in vs_torchvision[1:]] == ["resnet18"]
    assert float(vs_torchvision[1][-1]) == 0.0  # the same weights give the same outputs
    assert all(float(cell.replace(",", "")) > 0 for cell in vs_torchvision[1][1:7])
    assert vs_minimal[0] == ["Lightning side", "s/epoch Lightning", "minimal loop", "Lightning / minimal"]
    assert [row[0].split(" (")[0] for row in vs_minimal[1:]] == ["the default run", "bare Trainer", "Lightning alone"]
    assert all(float(row[1]) > 0 and float(row[2]) > 0 and row[3].endswith("x") for row in vs_minimal[1:])
    assert data_paths[0] == ["per-image samples/s", "fast path samples/s", "fast / per-image"]
    assert len(data_paths) == 2
    assert "within 0.97-1.03x of torchvision in both training and inference:" in result.stdout


def test_benchmark_rejects_a_model_torchvision_does_not_have(tmp_path: Path) -> None:
    result = run_script("benchmark.py", "models=lenet5", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: models: lenet5 not in torchvision; shared: alexnet_tv, googlenet_tv, ")


def test_benchmark_control_times_torchvision_against_a_copy_of_itself(tmp_path: Path) -> None:
    result = run_script(
        "benchmark.py", "parts=a", "models=squeezenet1_1", "control=true", "batch=2", "steps=2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (table,) = tables(result.stdout)
    assert table[0][1:5] == ["train img/s ours", "torchvision", "ours/tv", "tv copy/tv"]
    assert table[0][5:9] == ["infer img/s ours", "torchvision", "ours/tv", "tv copy/tv"]
    assert all(0.2 < float(table[1][column]) < 5 for column in (3, 4, 7, 8))
    assert "torchvision's copy within 0.97-1.03x of torchvision (the control):" in result.stdout


def test_benchmark_compares_another_network_with_the_minimal_loop(tmp_path: Path) -> None:
    result = run_script("benchmark.py", "parts=b", "network=lenet5_paper", "epochs=2", "rounds=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(b) lenet5_paper on the bundled digits" in result.stdout
    (vs_minimal,) = tables(result.stdout)
    assert len(vs_minimal) == 4


def test_benchmark_times_a_variant_of_the_default_run_in_the_same_rounds(tmp_path: Path) -> None:
    result = run_script(
        "benchmark.py", "parts=b", "sides=default,variant", "variant=callbacks.layer_stats=null;guards=none",
        "epochs=2", "rounds=1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (vs_minimal,) = tables(result.stdout)
    assert [row[0] for row in vs_minimal[1:]] == [
        "the default run (callbacks, guards, TensorBoard, checkpoints)",
        "the default run with callbacks.layer_stats=null;guards=none",
    ]
    assert vs_minimal[1][2] == vs_minimal[2][2]  # one minimal loop a round for every side


def test_benchmark_rejects_a_network_without_a_model_config(tmp_path: Path) -> None:
    result = run_script("benchmark.py", "parts=b", "network=lenet55", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: network: unknown model 'lenet55'; did you mean lenet5? accepted: alexnet, alexnet_tv, "
    )


@pytest.mark.slow  # 4,500 images, two epochs of each side: about 15 s
def test_benchmark_times_the_chosen_sides_on_cifar_shaped_data(tmp_path: Path) -> None:
    # the GPU check's setting (device=cuda data=cifar_shaped network=resnet20), here with LeNet-5 on the CPU and a
    # tenth of its 45,000 images of 3x32x32 in memory, two epochs
    result = run_script(
        "benchmark.py", "parts=b", "data=cifar_shaped", "train_size=4500", "sides=alone", "epochs=2", "rounds=1",
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(b) lenet5 on CIFAR-shaped data (batch 128, 36 training and 4 validation batches an epoch), cpu" in (
        result.stdout
    )
    (vs_minimal,) = tables(result.stdout)
    assert [row[0] for row in vs_minimal[1:]] == [
        "Lightning alone (forward, loss and step in a LightningModule, bare Trainer)"
    ]


def test_the_cifar_shaped_data_is_cifar_10s_training_split_in_shape_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # as `python scripts/benchmark.py` finds benchmark_data
    benchmark = importlib.import_module("benchmark")
    options = benchmark.parse_options(["data=cifar_shaped"])
    cfg = benchmark.compose_default(tmp_path, options)
    assert (cfg.data.train_size, cfg.data.val_size, cfg.data.batch_size) == (45000, 5000, 128)
    assert (cfg.data.image_size, cfg.data.in_channels) == (32, 3)


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("data=cifar", "error: data: one of digits, cifar_shaped, got cifar"),
        (
            "sides=default,none",
            "error: sides: a comma-separated subset of default, bare, alone, variant, got default,none",
        ),
        ("sides=variant", "error: sides=variant: give its overrides of the default run, e.g. variant='guards=none'"),
        (
            "sides=variant variant=callbacks.nothing.x=1",
            "error: variant: Could not override 'callbacks.nothing.x'. To append to your config use "
            "+callbacks.nothing.x=1",
        ),
    ],
)
def test_benchmark_names_what_its_words_accept(tmp_path: Path, argument: str, message: str) -> None:
    result = run_script("benchmark.py", "parts=b", *argument.split(), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == message + "\n"
