"""The lecture notes' gradient check of a model: python scripts/gradcheck.py model=<name> [model.<option>=...].

A table of analytic against numeric derivatives per parameter tensor and for the input (training/gradcheck.py);
exit status 2 with one ``error:`` line naming the worst tensor when a gradient is wrong.
"""

from training.cli import run
from training.gradcheck import gradcheck

if __name__ == "__main__":
    run(gradcheck, config_name="gradcheck")
