"""See inside a trained classifier: python scripts/visualize.py ckpt_path=<file.ckpt> method=<method>.

Methods: saliency, guided_backprop, gradcam, integrated_gradients, occlusion, deconvnet, tsne, top_patches; the
figure goes to a new PNG file beside the checkpoint (``out=`` another folder) and to the run's TensorBoard logs.
"""

from training.cli import run
from training.visualize import visualize

if __name__ == "__main__":
    run(visualize, config_name="visualize")
