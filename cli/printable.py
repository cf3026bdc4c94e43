"""Text that is safe to print on an operator's terminal.

``tail`` and ``audit`` print values that arrived from outside (ids, query values, message
content). A control character among them (ESC starts a terminal escape sequence; so does the
8-bit CSI U+009B) could move the cursor, rewrite earlier lines or retitle the window, and a
newline could forge a whole line. Every such character is printed as a JSON-style ``\\uXXXX``
escape instead, which keeps JSON output valid JSON.
"""

import json
import re
import unicodedata

#: control (Cc: C0, DEL, C1), format (Cf: bidi overrides, zero-width), line/paragraph separators
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_CANDIDATE = re.compile(r"[^\x20-\x7e]")


def escape(text):
    """``text`` with every control, format or separator character written as ``\\uXXXX``."""
    return _CANDIDATE.sub(_escaped, text)


def _escaped(found):
    char = found.group()
    if unicodedata.category(char) in _UNSAFE_CATEGORIES:
        return json.dumps(char)[1:-1]
    return char
