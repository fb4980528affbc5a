"""User-supplied text in Streamlit's markdown: image ids, file and class names, paths, error messages.

Streamlit escapes HTML but renders markdown, so a file named ``![b](http://host/x.png).png`` would make the browser
fetch that URL, ``[a](...)`` would become a link and ``**x**`` bold. :func:`plain` backslash-escapes every character
markdown (and Streamlit's ``:directive[...]`` and ``$math$`` syntax) gives a meaning, so the text shows as written.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def plain(text: object) -> str:
    """``text`` as literal markdown: every markdown-significant character backslash-escaped."""
    return _SPECIAL.sub(r"\\\1", str(text))
