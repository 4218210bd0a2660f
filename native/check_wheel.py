"""Fail unless each given wheel carries a compiled ``rfc6455._native`` that really loads.

Usage: ``python native/check_wheel.py dist/*.whl``. Each wheel is unpacked into a temporary
directory and a fresh, isolated (``-I``) interpreter imports the package from there, so a
module that is present but broken (wrong ABI, missing symbol) fails too. Exits 1 with a
reason otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile

_NATIVE_SUFFIXES = (".so", ".pyd")

_PROBE = (
    "import rfc6455._native, rfc6455._kernels as m; "
    "assert m.IMPLEMENTATION == 'c', m.IMPLEMENTATION; "
    "assert m.apply_mask(b'Hello', b'\\x37\\xfa\\x21\\x3d') == bytes.fromhex('7f9f4d5158'); "
    "print(rfc6455._native.__file__)"
)


def check(wheel: str) -> str | None:
    """Return None if ``wheel`` is good, else the reason it is not."""
    with zipfile.ZipFile(wheel) as zf:
        natives = [
            name
            for name in zf.namelist()
            if name.startswith("rfc6455/_native") and name.endswith(_NATIVE_SUFFIXES)
        ]
        if len(natives) != 1:
            return f"expected one compiled rfc6455/_native module, found {natives}"
        with tempfile.TemporaryDirectory() as tmp:
            zf.extractall(tmp)
            env = {k: v for k, v in os.environ.items() if k != "RFC6455_NO_EXTENSIONS"}
            proc = subprocess.run(
                [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {tmp!r}); {_PROBE}"],
                check=False,
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp,
                timeout=60,
            )
            if proc.returncode != 0:
                return f"{natives[0]} does not load: {proc.stderr.strip()}"
            if not proc.stdout.strip().startswith(tmp):
                return f"imported rfc6455._native from elsewhere: {proc.stdout.strip()}"
    return None


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: check_wheel.py WHEEL...", file=sys.stderr)
        return 2
    failed = False
    for wheel in argv:
        reason = check(wheel)
        if reason is None:
            print(f"ok: {wheel} contains a loadable rfc6455._native")
        else:
            print(f"FAIL: {wheel}: {reason}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
