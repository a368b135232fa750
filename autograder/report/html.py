"""The HTML exporter of every rendered page (``make html``'s site, ``make feedback``): math that
shows without a network.

nbconvert's lab template typesets math in the reader's browser with MathJax loaded from a CDN, so
a page opened offline shows raw LaTeX. This exporter converts each formula to MathML when the page
is written (``latex2mathml``), which browsers draw themselves, and its template loads no script
from elsewhere (MathJax, require.js, Mermaid): a page is one self-contained file. Code cells are
not passed through bleach a second time: Pygments has already escaped every character of the
source, and that pass took 40 % of a feedback page's time.
"""
from __future__ import annotations

import html

from jinja2 import DictLoader, pass_context
from latex2mathml.converter import convert
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from traitlets import default

OFFLINE_TEMPLATE = "offline.html.j2"
TEMPLATES = {OFFLINE_TEMPLATE: """\
{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block input %}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
     <div class="cm-editor cm-s-jupyter">
{{ cell.source | highlight_code(metadata=cell.metadata) }}
     </div>
</div>
{%- endblock input %}
{% block data_latex scoped %}
<div class="jp-RenderedLatex jp-OutputArea-output {{ extra_class }}" data-mime-type="text/latex">
{{ output.data['text/latex'] | markdown2html }}
</div>
{%- endblock data_latex %}
"""}


def tex_to_mathml(tex: str, display: bool) -> str:
    """MathML for one formula; TeX that does not parse (a student's answer, say) is shown as written."""
    try:
        return convert(tex, display="block" if display else "inline")
    except Exception:  # latex2mathml raises plain Exception subclasses for malformed TeX
        return f'<code class="tex">{html.escape(tex)}</code>'


class MathMLRenderer(IPythonRenderer):
    """nbconvert's Markdown renderer, with ``$...$``, ``$$...$$`` and environments as MathML."""

    def block_math(self, body: str) -> str:
        return tex_to_mathml(body, display=True)

    def inline_math(self, body: str) -> str:
        return tex_to_mathml(body, display=False)

    def latex_environment(self, name: str, body: str) -> str:
        return tex_to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)


class OfflineHTMLExporter(HTMLExporter):
    """The lab template, with math as MathML and no script loaded from another site. HTML written
    in Markdown is shown as text, not markup: a student's answer cannot add a script to a page."""

    @default("template_file")
    def _template_file_default(self) -> str:
        return OFFLINE_TEMPLATE

    @default("extra_loaders")
    def _extra_loaders_default(self) -> list:
        return [DictLoader(TEMPLATES)]

    @pass_context
    def markdown2html(self, context, source: str) -> str:
        """nbconvert's ``HTMLExporter.markdown2html``, rendering math with ``MathMLRenderer``."""
        cell = context.get("cell", {})
        renderer = MathMLRenderer(
            escape=True, attachments=cell.get("attachments", {}), embed_images=self.embed_images,
            path=context.get("resources", {}).get("metadata", {}).get("path", ""),
            anchor_link_text=self.anchor_link_text, exclude_anchor_links=self.exclude_anchor_links,
            **self.lexer_options)
        return MarkdownWithMath(renderer=renderer).render(source)


def html_exporter() -> HTMLExporter:
    """The exporter for the site and the feedback: JupyterLab's look, readable offline."""
    return OfflineHTMLExporter(template_name="lab")
