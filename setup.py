"""onthefly: exactly labelled gaze training data, rendered on the fly."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "onthefly" / "__init__.py").read_text()).group(1)

setup(
    name="onthefly",
    version=VERSION,
    description="GPU-side on-the-fly novel-view synthesis of normalized, exactly labelled gaze training data",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["onthefly", "onthefly.*"]),
    package_data={"onthefly": ["py.typed"]},  # PEP 561: the package's annotations are for type checkers
    python_requires=">=3.9",
    install_requires=[
        # torch is not pinned here: on a CPU-only machine install torch==2.13.0 first (scripts/install.sh does).
        "torch>=2.1",
        "numpy>=1.24",
        "h5py>=3.8",
        "opencv-python>=4.8",
        "scipy>=1.10",
        "lightning>=2.2",
        "jsonargparse[signatures]>=4.27",  # LightningCLI (python -m onthefly.train / onthefly train)
        "tqdm>=4.60",
        # the compiled CPU renderer (backend="numba", the CPU default): wheels for CPython on Linux (x86-64,
        # aarch64), macOS (x86-64, arm64) and Windows (x86-64); llvmlite bundles LLVM, so no compiler is needed
        # at install or run time. Where it cannot be imported, rendering falls back to the torch backend.
        "numba>=0.59",
    ],
    extras_require={
        # PyTorch3D has no Linux wheel on PyPI: build it from source or install it with conda; then
        # `backend="pytorch3d"` becomes available. onthefly never requires it.
        "pytorch3d": ["pytorch3d>=0.7.4"],
        "face-alignment": ["face-alignment>=1.4"],
        "dlib": ["dlib-bin>=19.24", "face-recognition-models>=0.3"],
        # single-image reconstruction (docs/reconstruction.md): both landmark detectors and the test photos
        # (scikit-image's astronaut, matplotlib's grace_hopper.jpg); the core reconstruction needs none of them
        "reconstruct": ["dlib-bin>=19.24", "face-recognition-models>=0.3", "face-alignment>=1.4",
                        "scikit-image>=0.20", "matplotlib>=3.5"],
        # the test job (scripts/test.sh): pytest, the linters it runs first (ruff, mypy) and the TensorBoard logger
        # the training tests exercise next to the CSV one
        "test": ["pytest>=7", "ruff>=0.4", "mypy>=1.8", "tensorboard>=2.14"],
        # the peer renderer of `onthefly bench` / benchmarks/render.py (headless OpenGL through EGL, e.g. Mesa's
        # llvmpipe: apt-get install libegl-mesa0 libgl1-mesa-dri)
        "bench": ["moderngl>=5.8"],
    },
    entry_points={"console_scripts": ["onthefly=onthefly.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
