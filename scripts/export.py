"""Export a trained network: python scripts/export.py ckpt_path=<file.ckpt> format=<format>.

``format`` is state_dict, safetensors, torchscript or onnx. The file goes beside the checkpoint (``out=<path>``
elsewhere); an existing file is kept unless ``overwrite=true``.
"""

from training.cli import run
from training.export import export

if __name__ == "__main__":
    run(export, config_name="export")
