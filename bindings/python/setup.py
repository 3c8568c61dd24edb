"""Packaging of the Python binding. With `libquill.so` inside the package (scripts/python-wheel.sh
puts it there) the wheel is a platform wheel that carries the library, so `pip install` needs no
Rust toolchain and no QUILL_LIBRARY; without it the package uses a libquill found at run time."""
import os

from setuptools import setup
from setuptools.dist import Distribution

try:
    from wheel.bdist_wheel import bdist_wheel
except ImportError:  # setuptools >= 70 ships its own
    from setuptools.command.bdist_wheel import bdist_wheel

BUNDLED = os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)), "quill", "libquill.so"))


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return BUNDLED


class PlatformWheel(bdist_wheel):
    """ctypes needs no particular Python: py3-none-<platform> when the library is bundled."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = not BUNDLED

    def get_tag(self):
        python, abi, plat = super().get_tag()
        return ("py3", "none", plat) if BUNDLED else (python, abi, plat)


setup(distclass=BinaryDistribution, cmdclass={"bdist_wheel": PlatformWheel}, package_data={"quill": ["libquill.so"]} if BUNDLED else {})
