"""Evaluate a checkpoint on its data set's test split: python scripts/eval.py ckpt_path=<file.ckpt>."""

from training.cli import run
from training.tasks import evaluate

if __name__ == "__main__":
    run(evaluate, config_name="eval")
