"""Build the Cython extensions; all other metadata lives in pyproject.toml.

Every ``viz/_fast/_*_c.pyx`` becomes ``viz._fast._*_c`` (the shared compiled cores), and every
``viz/collect/_*_c.pyx`` becomes ``viz.collect._*_c`` (collect's own fast lane).
``VIZ_DEBUG=1`` builds with line tracing and internal asserts; ``VIZ_NO_EXTENSIONS=1`` at build
time skips compilation (the pure-Python twins are then used at run time).
"""

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
# Extra C libraries per extension (OpenSSL's libcrypto: SHA-256 and CRYPTO_memcmp for tokens).
LIBRARIES = {"_token_c": ["crypto"]}


def _extensions():
    if os.environ.get("VIZ_NO_EXTENSIONS") == "1":
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    debug = os.environ.get("VIZ_DEBUG") == "1"
    macros = [("CYTHON_TRACE", "1")] if debug else []
    sources = [pyx for package in ("_fast", "collect")
               for pyx in sorted((HERE / "viz" / package).glob("_*_c.pyx"))]
    exts = [
        Extension(
            f"viz.{pyx.parent.name}.{pyx.stem}",
            [str(pyx.relative_to(HERE))],
            define_macros=macros,
            extra_compile_args=["-O2"],
            libraries=LIBRARIES.get(pyx.stem, []),
        )
        for pyx in sources
    ]
    return cythonize(
        exts,
        language_level=3,
        compiler_directives={
            "boundscheck": debug,
            "wraparound": debug,
            "linetrace": debug,
            "embedsignature": True,
        },
    )


setup(ext_modules=_extensions())
