"""The image decoders' own log records and warnings, kept off the user's terminal.

A file they cannot read is reported by Tessera in one line; their tracebacks and warnings on
stderr would only bury it. ``TESSERA_DEBUG=1`` leaves them all on.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings

DECODERS = ("pydicom", "pylibjpeg", "libjpeg", "openjpeg", "monai", "nibabel", "rasterio", "PIL")
# warnings attributed to a decoder, or to Tessera's reading code that called it
_WARNING_MODULES = rf"({'|'.join(DECODERS)}|tessera\.tasks\.sources)(\.|$)"


@functools.cache
def quiet_decoders() -> None:
    """Detach the decoders' loggers from the root handlers and ignore their warnings.

    Detaching (rather than raising the level) survives a library that resets its logger's
    level when it is imported, as pydicom does.
    """
    if os.environ.get("TESSERA_DEBUG"):
        return
    for name in DECODERS:
        log = logging.getLogger(name)
        log.propagate = False
        if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
            log.addHandler(logging.NullHandler())  # else logging's last resort prints it
    warnings.filterwarnings("ignore", module=_WARNING_MODULES)
