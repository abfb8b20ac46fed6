"""Griffe extension: renders tfssl's Keras-style docstrings with mkdocstrings.

Keras docstrings put an `Example:` or `Formula:` title at the left margin, a blank line,
then unindented content, and write doctests without a code fence. The Google parser keeps
such titles as text, and Markdown would read `>>>` as nested block quotes. This extension
bolds the titles and fences every doctest run as a `pycon` block; the indented `Args:`,
`Returns:`, `Raises:` and `References:` sections are left to the Google parser.
"""

import re

import griffe

_KERAS_TITLE = re.compile(r"^(Example|Examples|Formula|Formulas|Usage|Note|Notes):\s*$")


def keras_markdown(text):
    """Returns `text` with doctest runs fenced and Keras section titles in bold."""
    lines = text.split("\n")
    out = []
    in_fence = False
    in_doctest = False
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if in_doctest and not stripped:
            out.append("```")
            in_doctest = False
        if stripped.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and not in_doctest and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
            in_doctest = True
        elif not in_fence and not in_doctest and _KERAS_TITLE.match(line):
            next_line = lines[i + 1] if i + 1 < len(lines) else ""
            if not next_line.strip():
                out.append(f"**{line.strip()}**")
                continue
        out.append(line)
    if in_doctest:
        out.append("```")
    return "\n".join(out)


class KerasDocstrings(griffe.Extension):
    """Rewrites each object's docstring with `keras_markdown` before it is parsed."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = keras_markdown(obj.docstring.value)
