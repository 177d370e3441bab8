"""Classify images with a trained model: python scripts/predict.py ckpt_path=<file.ckpt> inputs=<image|folder|list>.

``top_k=5`` classes per image with their probabilities, as a table; ``device=cuda`` runs the model on a GPU.
"""

from training.cli import run
from training.inference import predict

if __name__ == "__main__":
    run(predict, config_name="predict")
