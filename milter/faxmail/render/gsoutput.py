"""What Ghostscript prints for a good file, and which of its warnings a good file may cause.

Measured with gs 10.00 (PDF interpreter, fonts-ipafont); ghostscript.py refuses a document on
any other line (tests/test_render.py and tests/test_hostile.py hold the facts).
"""

from __future__ import annotations

import re

# Everything Ghostscript prints for a good file (gs 10, PDF interpreter, with fonts-ipafont).
NORMAL_OUTPUT = re.compile(
    r"|".join(
        [
            r"GPL Ghostscript \d+\.\d+(\.\d+)? \(\d{4}-\d\d-\d\d\)",
            r"Copyright \(C\) \d{4} Artifex Software, Inc\.  All rights reserved\.",
            r"This software is supplied under the GNU AGPLv3 and comes with NO WARRANTY:",
            r"see the file COPYING for details\.",
            r"Processing pages \d+ through \d+\.",
            r"Page \d+",
            # a font the PDF names but does not embed, and the file gs substitutes
            r"Loading (font|CIDFont) .+ \(or substitute\) from /\S.*",
            r"Loading \S+ font from /\S.*\.\.\. [\d ]*done\.",
            r"Querying operating system for font files\.\.\.",
            r"",
        ]
    )
)
# gs's closing summary: warnings about how a content stream is written, which gs (and every
# viewer) draws through, are tolerated; any other warning in it still refuses the document.
SUMMARY = "The following warnings were encountered at least once while processing this file:"
TOLERATED_WARNINGS = {
    # an ExtGState (a soft mask) set inside BT/ET; text shown in a form's generated appearance
    "invalid operator used in text block",
    "text operator outside text block",
}
SUMMARY_NOTICE = re.compile(
    r"\*\*\*\* (This file had errors that were repaired or ignored\."
    r"|Please notify the author of the software that produced this"
    r"|file that it does not conform to Adobe's published PDF"
    r"|specification\.)"
)
# "GPL Ghostscript 10.00.0: " alone on a line prefixes the message on the next line.
MESSAGE_PREFIX = re.compile(r"GPL Ghostscript [\d.]+:\s*")
