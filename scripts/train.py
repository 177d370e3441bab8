"""Train a model: python scripts/train.py [model=lenet5] [data=digits] [optimizer.lr=0.05] [-m for sweeps]."""

from training.cli import run
from training.tasks import train

if __name__ == "__main__":
    run(train, config_name="train")
