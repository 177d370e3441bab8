"""scripts/tensorboard_screenshots.py: the README's TensorBoard pictures, taken by a headless Chromium."""

import shutil

import pytest

from conftest import run_script

CHROMIUM = "/usr/bin/chromium"


def test_bad_arguments_are_one_line(tmp_path) -> None:
    result = run_script("tensorboard_screenshots.py", f"logdir={tmp_path / 'missing'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: logdir must be a run's TensorBoard directory, got '{tmp_path / 'missing'}'"
    result = run_script("tensorboard_screenshots.py", f"logdir={tmp_path}", "chromium=/no/chromium", cwd=tmp_path)
    assert result.returncode == 2 and "no Chromium at '/no/chromium'" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs a Chromium (apt-get install chromium)")
def test_screenshots_of_a_real_run(train_config, tmp_path) -> None:
    pytest.importorskip("playwright")
    from training.tasks import train

    summary = train(train_config("trainer.max_epochs=2", "+trainer.limit_train_batches=5"))
    out = tmp_path / "shots"
    result = run_script(
        "tensorboard_screenshots.py", f"logdir={summary['tensorboard_dir']}", f"out={out}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    for name in ("tensorboard_scalars.png", "tensorboard_filters.png", "tensorboard_layer_stats.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 10_000
