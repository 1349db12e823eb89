"""MkDocs hook: show Sphinx cross-reference roles of the docstrings as plain code.

The docstrings are read by ``help()`` as much as by the site, and say ``:class:`Conv1d```
the way NumPy-style docstrings do; Markdown renders that as ``:class:<code>Conv1d</code>``.
This drops the role name so the page shows ``Conv1d`` in code type.
"""

import re

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):(?=<code>)")


def on_page_content(html, **kwargs):
    return _ROLE.sub("", html)
