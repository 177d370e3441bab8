"""Evaluate a checkpoint on its data set's test split: python scripts/eval.py ckpt_path=<file.ckpt>.

``ckpt_path=[a.ckpt,b.ckpt,c.ckpt]`` tests an ensemble of classifiers trained on the same data set: the mean of
their softmax outputs, with each member's own metrics alongside.
"""

from training.cli import run
from training.tasks import evaluate

if __name__ == "__main__":
    run(evaluate, config_name="eval")
