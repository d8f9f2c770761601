"""Griffe extension used by the documentation build only (mkdocs.yml, mkdocstrings options).

jkoflow's docstrings are written for readers of the source: Sphinx roles
(``:class:`~jkoflow.logdet.LogDetError```), NumPy-style section underlines whose items read
``name: description``, reST literal blocks introduced by ``::`` and reST simple tables. This
extension rewrites each docstring, before mkdocstrings parses it (Google style), into the
Markdown that style expects; the source files are not touched:

* ``:role:`~pkg.mod.Name``` and ``:role:`pkg.mod.Name``` become the code span ``Name`` /
  ``pkg.mod.Name``;
* ``Parameters`` / ``Attributes`` / ``Returns`` / ``Raises`` over a ``-----`` underline become
  Google sections (``Parameters:`` with the items indented below it), up to the next blank line;
  any other underlined title becomes a bold paragraph;
* a paragraph ending in ``::`` ends in ``:`` (the indented block after it is already a Markdown
  code block);
* a reST simple table (rows between ``=====  =====`` rules) is fenced as preformatted text.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|obj|exc|const|term):`(~?)([^`<]+?)`")
RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")
SECTIONS = {
    "Parameters": "Parameters",
    "Arguments": "Parameters",
    "Attributes": "Attributes",
    "Returns": "Returns",
    "Raises": "Raises",
    "Yields": "Yields",
    "Warns": "Warns",
    "Examples": "Examples",
    "Notes": "Note",
}


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    target = target.strip()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _underline(line: str, title: str) -> bool:
    text = line.strip()
    return len(text) >= 3 and set(text) <= {"-"} and bool(title.strip())


def to_markdown(text: str) -> str:
    """The Markdown/Google-style form of one jkoflow docstring."""
    lines = ROLE.sub(_role, text).split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and not line.startswith(" ") and _underline(nxt, line):
            title = line.strip()
            i += 2
            if title in SECTIONS:
                out.append(f"{SECTIONS[title]}:")
                while i < len(lines) and lines[i].strip():
                    out.append("    " + lines[i])
                    i += 1
            else:
                out.append(f"**{title}**")
                out.append("")
            continue
        if RULE.match(line):  # a reST simple table: three rules (top, under the header, bottom)
            out.append("```text")
            rules = 0
            while i < len(lines):
                out.append(lines[i])
                if RULE.match(lines[i]):
                    rules += 1
                i += 1
                if rules == 3:
                    break
            out.append("```")
            continue
        if line.rstrip().endswith("::"):
            stripped = line.rstrip()[:-2].rstrip()
            line = (stripped + ":") if stripped else ""
        out.append(line)
        i += 1
    return "\n".join(out)


class JkoflowDocstrings(griffe.Extension):
    """Rewrite every docstring with :func:`to_markdown` as griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
