"""cffi build script for ``rfc6455._native`` (API mode).

setuptools runs this through ``cffi_modules`` in ``setup.py``; cffi execs it, so it must not
import ``rfc6455``. For a quick in-place build during development::

    python native/build_native.py        # writes rfc6455/_native.abi3.so next to the sources

``pip install -e .`` builds the same module in place too.
"""

from __future__ import annotations

import os
import re
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

HEADER = os.path.join(HERE, "rfc6455_native.h")


def _cdef(header: str) -> str:
    """The header as cffi's cdef reads it: the prototypes are declared there and only there.

    cffi parses C declarations (comments included) and ``#define NAME <integer>``, but no
    other preprocessor line, so the include guard and the includes are left out.
    """
    with open(header, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return "\n".join(
        line
        for line in lines
        if not line.startswith("#") or re.fullmatch(r"#define \w+ \d+", line)
    )


CDEF = _cdef(HEADER)


def _relative(path: str) -> str:
    # setuptools wants relative source paths (they also name the object files); pip runs
    # the build from the project root, a manual run may start anywhere.
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path


def _compile_args() -> list[str]:
    if sys.platform == "win32":
        return ["/O2"]
    # No -march: the wheel must run on any machine of the target architecture. AVX2 is
    # chosen at run time inside the C code.
    return ["-O3", "-std=c99", "-Wall", "-Wno-unused-function"]


ffibuilder = FFI()
ffibuilder.cdef(CDEF)
# cffi's wrappers drop the GIL around every call (Py_BEGIN/END_ALLOW_THREADS). Our kernels
# never block and take microseconds (the largest, unmasking 16 MiB, about a millisecond),
# while releasing and re-taking the GIL is a good part of a short call (~55 of ~190 ns for
# take_frame): the wrappers compiled here keep the GIL, as C speedups of websockets do.
_KEEP_THE_GIL = """
#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define Py_BEGIN_ALLOW_THREADS {
#define Py_END_ALLOW_THREADS }
"""

ffibuilder.set_source(
    "rfc6455._native",
    '#include "rfc6455_native.h"\n' + _KEEP_THE_GIL,
    sources=[_relative(os.path.join(HERE, "rfc6455_native.c"))],
    include_dirs=[_relative(HERE)],
    depends=[_relative(HEADER)],
    extra_compile_args=_compile_args(),
    # cffi's generated code uses only the stable ABI; saying so here too gives the module
    # the same name (_native.abi3.so) from pip and from a manual build below, so an old
    # build under another suffix cannot shadow a new one.
    py_limited_api=True,
    # A missing or broken compiler must not fail the install: the pure-Python twin in
    # rfc6455/_kernels_py.py takes over.
    optional=True,
)

if __name__ == "__main__":
    # Build straight into the package directory (the same result as build_ext --inplace);
    # the generated rfc6455/_native.c and the object files are gitignored.
    os.chdir(os.path.dirname(HERE))
    built = os.path.abspath(ffibuilder.compile(tmpdir=".", verbose=True))
    # Remove builds under other suffixes: Python would prefer a stale _native.cpython-*.so
    # to this _native.abi3.so.
    for name in os.listdir("rfc6455"):
        path = os.path.abspath(os.path.join("rfc6455", name))
        if name.startswith("_native.") and name.endswith((".so", ".pyd")) and path != built:
            os.remove(path)
            print(f"removed stale {path}")
