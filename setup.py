"""Packaging for the StackGAN TF2 / Keras 3 port.

`pip install -e .[dev]` makes `misc`, `stageI` and `stageII` importable from anywhere, so the
entry points run as `python stageI/run_exp.py ...` from the repository root, as in the original.
"""
from setuptools import find_packages, setup

setup(
    name="stackgan-keras",
    version="0.1.0",
    description="A faithful TensorFlow 2 / Keras 3 port of StackGAN (Zhang et al., ICCV 2017)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["misc", "misc.*", "stageI", "stageII"]),
    package_data={"stageI": ["cfg/*.yml"], "stageII": ["cfg/*.yml"]},
    install_requires=[
        # TF 2.21 ships Keras 3 and no longer pulls in tensorboard, which the TensorBoard callback
        # and tf.summary both need.
        "tensorflow>=2.21,<2.22",
        "keras>=3.12",
        "tensorboard>=2.21,<2.22",
        "numpy>=1.26",
        "pillow>=10",
        "pyyaml>=6",
        "tqdm>=4.60",
        # misc.text.import_t7 reads Reed et al.'s Torch7 .t7 text encoders (pure Python, no Lua).
        "torchfile==0.1.0",
    ],
    extras_require={"dev": ["pytest>=8"]},
)
