"""The pages the course writes (site, feedback) show student text as text and read offline."""
from __future__ import annotations

import nbformat

from autograder.report.feedback import as_text, sanitise
from autograder.report.html import html_exporter

HOSTILE = '</div></pre><script>alert("code")</script><img src=x onerror=alert(1)>'


def render(*cells) -> str:
    nb = nbformat.v4.new_notebook(cells=list(cells))
    body, _ = html_exporter().from_notebook_node(nb)
    return body


def test_code_and_markdown_from_a_student_are_shown_as_text():
    body = render(nbformat.v4.new_code_cell(f"text = '{HOSTILE}'"),
                  nbformat.v4.new_markdown_cell(f"An answer with **bold** and a < b & c {HOSTILE}"))
    assert "<script" not in body and "<img" not in body, "student text became markup"
    assert body.count("&lt;script&gt;alert") == 2, "both cells' text should be shown, escaped"
    assert "<strong>bold</strong>" in body and "a &lt; b &amp; c" in body


def test_feedback_keeps_only_outputs_that_cannot_carry_markup():
    cell = nbformat.v4.new_code_cell("show()", outputs=[nbformat.v4.new_output(
        "display_data", data={"text/html": HOSTILE, "application/javascript": "alert(1)",
                              "image/svg+xml": "<svg onload='alert(1)'/>", "text/plain": "a plot"})])
    nb = nbformat.v4.new_notebook(cells=[cell])
    body, _ = html_exporter().from_notebook_node(sanitise(nb, nbformat.v4.new_notebook(), {}))
    assert "<script" not in body and "alert(1)" not in body and "onerror" not in body
    assert "a plot" in body


def test_math_is_mathml_and_nothing_is_fetched():
    body = render(nbformat.v4.new_markdown_cell("The roof is $\\min(P, \\beta I)$ and\n\n$$\\frac{a}{b}$$"))
    assert body.count("<math") == 2 and "$\\min" not in body
    head = body.split("</head>")[0]
    assert "<script src" not in head and "<link" not in head.replace("<link rel=\"icon\"", ""), head[:300]


def test_grader_text_in_feedback_is_shown_as_written():
    written = "wrong values at [0, 1]: got *2* <b>3</b> & $x$, see `it`"
    body = render(nbformat.v4.new_markdown_cell(f"> - {as_text(written)}"))
    shown = body.split("<li>")[1].split("</li>")[0]
    assert shown == written.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
