"""Only here to pass ``cffi_modules`` (setuptools has no declarative key for it).

Set ``RFC6455_NO_EXTENSIONS=1`` when building for a pure-Python install. The extension is
optional either way: if it fails to compile, the install goes on without it.
"""

import os

from setuptools import setup

pure = bool(os.environ.get("RFC6455_NO_EXTENSIONS"))
setup(cffi_modules=[] if pure else ["native/build_native.py:ffibuilder"])
