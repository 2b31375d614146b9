"""An exercise's solution, prose and executed code cells, behind one toggle.

A solution mixes prose (a derivation, with glued numbers) and code cells
that the build executes. sphinx-design's ``{dropdown}`` can hold the prose
but not a notebook's code cell, so a solution used to stack two toggles:
the dropdown, then the code cell's own "Show the code" toggle. Here the
two directives

    ```{solution-start}
    ```
    prose, code cells, more prose ...
    ```{solution-end}
    ```

mark where a solution starts and ends (QuantEcon's "gated" solutions, from
sphinx-exercise, which does not support Sphinx 9), and a transform moves
everything between the two into one node. In HTML it is a sphinx-design
dropdown (the same markup and classes), closed until the reader opens it.
An optional argument replaces the title "Solution".
"""

from __future__ import annotations

from docutils import nodes
from sphinx.errors import ExtensionError
from sphinx.transforms import SphinxTransform
from sphinx.util.docutils import SphinxDirective

# sphinx-design's chevron (octicon chevron-right), as its dropdowns draw it.
_CHEVRON = (
    '<span class="sd-summary-state-marker sd-summary-chevron-right">'
    '<svg version="1.1" width="1.5em" height="1.5em" class="sd-octicon '
    'sd-octicon-chevron-right" viewBox="0 0 24 24" aria-hidden="true"><path d="M8.72 '
    "18.78a.75.75 0 0 1 0-1.06L14.44 12 8.72 6.28a.751.751 0 0 1 .018-1.042.751.751 0 0 1 "
    "1.042-.018l6.25 6.25a.75.75 0 0 1 0 1.06l-6.25 6.25a.75.75 0 0 1-1.06 0Z\"></path>"
    "</svg></span>"
)


class solution(nodes.General, nodes.Element):
    """The solution: its title in ``title``, its content as children."""


class _start(nodes.General, nodes.Element):
    pass


class _end(nodes.General, nodes.Element):
    pass


class SolutionStart(SphinxDirective):
    optional_arguments = 1
    final_argument_whitespace = True

    def run(self):
        node = _start(title=self.arguments[0] if self.arguments else "Solution")
        self.set_source_info(node)
        return [node]


class SolutionEnd(SphinxDirective):
    def run(self):
        node = _end()
        self.set_source_info(node)
        return [node]


class GateSolutions(SphinxTransform):
    """Move the nodes between each solution-start and its solution-end into one node."""

    default_priority = 200  # before references and glue are resolved

    def apply(self, **kwargs):
        for start in list(self.document.findall(_start)):
            parent = start.parent
            at = parent.index(start)
            body = []
            for sibling in parent.children[at + 1 :]:
                if isinstance(sibling, _end):
                    break
                if isinstance(sibling, (_start, nodes.section)):
                    sibling = None
                    break
                body.append(sibling)
            else:
                sibling = None
            if sibling is None:
                raise ExtensionError(
                    f"{start.source}:{start.line}: solution-start without a solution-end "
                    "before the next solution or section"
                )
            wrapper = solution(title=start["title"])
            for child in body:
                parent.remove(child)
            wrapper.extend(body)
            parent.replace(start, wrapper)
            parent.remove(sibling)


def _visit_html(self, node):
    self.body.append(
        '<details class="sd-sphinx-override sd-dropdown sd-card sd-mb-3 solution">\n'
        '<summary class="sd-summary-title sd-card-header">\n'
        f'<span class="sd-summary-text">{self.encode(node["title"])}</span>{_CHEVRON}'
        '</summary><div class="sd-summary-content sd-card-body docutils">\n'
    )


def _depart_html(self, node):
    self.body.append("</div>\n</details>\n")


def _visit_other(self, node):
    pass


def _depart_other(self, node):
    pass


def setup(app):
    app.add_node(
        solution,
        html=(_visit_html, _depart_html),
        latex=(_visit_other, _depart_other),
        text=(_visit_other, _depart_other),
    )
    app.add_directive("solution-start", SolutionStart)
    app.add_directive("solution-end", SolutionEnd)
    app.add_transform(GateSolutions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
