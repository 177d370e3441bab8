"""scripts/init_stats.py: the activation statistics of cs231n's initialisation experiment."""

import importlib.util
import itertools
from pathlib import Path

import pytest

from conftest import ROOT, run_script
from training.config import UserError

spec = importlib.util.spec_from_file_location("init_stats", ROOT / "scripts" / "init_stats.py")
init_stats = importlib.util.module_from_spec(spec)
spec.loader.exec_module(init_stats)


@pytest.fixture(scope="module")
def stds() -> dict[str, list[float]]:
    """Standard deviation of each of the 10 layers' outputs, per scheme (the notes' 1000 x 500 set-up)."""
    return {scheme: [std for _, std in init_stats.activation_stats(scheme)] for scheme in init_stats.SCHEMES}


def test_small_weights_make_the_activations_collapse_to_zero(stds: dict) -> None:
    small = stds["small/tanh"]
    assert 0.15 < small[0] < 0.3  # 0.01 * sqrt(500) = 0.22 before the (nearly linear) tanh
    assert all(later < 0.3 * earlier for earlier, later in itertools.pairwise(small))
    assert small[4] < 1e-3 and small[-1] < 1e-6


def test_large_weights_saturate_tanh() -> None:
    outputs = init_stats.layer_outputs("large/tanh")
    for layer in outputs:
        assert layer.std() > 0.95
        assert (layer.abs() > 0.99).float().mean() > 0.9  # almost every unit at -1 or +1: zero gradients


def test_xavier_with_tanh_decays_slowly(stds: dict) -> None:
    xavier = stds["xavier/tanh"]
    assert xavier[0] == pytest.approx(0.63, abs=0.02)
    assert xavier[-1] == pytest.approx(0.23, abs=0.02)
    assert all(later < earlier for earlier, later in itertools.pairwise(xavier))


def test_xavier_with_relu_halves_the_variance_at_every_layer(stds: dict) -> None:
    xavier_relu = stds["xavier/relu"]
    assert xavier_relu[0] == pytest.approx(0.58, abs=0.02)  # sqrt(1/2 - 1/(2 pi)) for unit-variance inputs
    ratios = [later / earlier for earlier, later in itertools.pairwise(xavier_relu)]
    assert all(0.6 < ratio < 0.8 for ratio in ratios)  # 1/sqrt(2) = 0.71
    assert xavier_relu[-1] < 0.05


def test_he_with_relu_keeps_the_statistics(stds: dict) -> None:
    he = stds["he/relu"]
    assert all(0.7 < std < 0.9 for std in he)  # sqrt(1 - 1/pi) = 0.83 for every layer, in expectation
    assert he[-1] > 0.8 * he[0]
    means = [mean for mean, _ in init_stats.activation_stats("he/relu")]
    assert all(0.45 < mean < 0.65 for mean in means)  # E[relu(z)] = 1 / sqrt(pi) = 0.56 for z ~ N(0, 2)


def test_options_change_depth_width_and_seed() -> None:
    assert len(init_stats.activation_stats("he/relu", layers=3, units=50, samples=40)) == 3
    assert init_stats.layer_outputs("he/relu", layers=1, units=50, samples=40)[0].shape == (40, 50)
    assert init_stats.activation_stats("he/relu", seed=1) == init_stats.activation_stats("he/relu", seed=1)
    assert init_stats.activation_stats("he/relu", seed=1) != init_stats.activation_stats("he/relu", seed=2)


def test_the_script_prints_a_table_row_per_layer(tmp_path: Path) -> None:
    done = run_script("init_stats.py", "layers=4", "units=100", "samples=200", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "| layer | small/tanh | large/tanh | xavier/tanh | xavier/relu | he/relu |" in lines
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 1", "| 2", "| 3", "| 4"]
    he_mean, he_std = (float(value) for value in rows[-1].strip(" |").split(" | ")[-1].split(" / "))
    assert 0.4 < he_mean < 0.7 and 0.6 < he_std < 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["layers=0"], "expected key=positive integer with key in layers, units, samples, seed, got 'layers=0'"),
        (["depth=3"], "expected key=positive integer with key in layers, units, samples, seed, got 'depth=3'"),
    ],
)
def test_bad_options_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        init_stats.main(args)


def test_plot_writes_a_figure_with_matplotlib_and_is_refused_without(tmp_path: Path) -> None:
    path = tmp_path / "stats.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="plot= needs matplotlib, which is not installed"):
            init_stats.main(["layers=2", f"plot={path}"])
        assert not path.exists()
    else:
        init_stats.main(["layers=2", "units=20", "samples=10", f"plot={path}"])
        assert path.stat().st_size > 0
