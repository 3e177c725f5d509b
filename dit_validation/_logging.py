"""One logging set-up for every command: our packages talk at INFO, third-party libraries only warn."""

from __future__ import annotations

import logging
import os
import sys

OUR_PACKAGES = ("theory", "dit_validation", "paper_figs")


def configure_logging(quiet: bool = False) -> None:
    """Root handler at WARNING; ``theory``/``dit_validation``/``paper_figs`` at INFO unless ``quiet``.

    Matplotlib's PDF backend (fontTools) and diffusers log at INFO/WARNING by default; at the root level
    they would bury the run's own messages, so only their warnings (and diffusers' errors) get through.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in OUR_PACKAGES:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.INFO)
    # diffusers warns on every from_pretrained without `accelerate` and on dtype casts we do on purpose;
    # it reads DIFFUSERS_VERBOSITY when first imported, so figure commands never have to import it here
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    if "diffusers" in sys.modules:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()
