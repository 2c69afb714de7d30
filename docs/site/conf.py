"""Sphinx configuration of the tutorial site (``make site``; see tools/site.py).

``tools.site`` copies this file into the staged source folder (``build/site-src``) next to the
notebooks, a generated ``index.md`` and the vendored MathJax, so every path here is relative to
that folder. Nothing is executed (the committed outputs are shown) and nothing is loaded from the
network when a page is viewed: MathJax is served from ``_static/mathjax``, widget views are not
embedded (their static figures are in the outputs).
"""

project = "Nested Hash Layer tutorial"
author = "nhl contributors"
copyright = "nhl contributors"  # noqa: A001 (Sphinx's name)

extensions = ["myst_nb"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "_static"]

# MyST: $...$ and $$...$$ math as in JupyterLab; heading anchors for links like 05_x.ipynb#part.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "html_image"]
myst_dmath_double_inline = True
myst_heading_anchors = 3

# myst-nb: show the committed outputs, never execute; no widget JavaScript from a CDN.
nb_execution_mode = "off"
nb_merge_streams = True
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]

# MathJax 3 from the npm package, copied into _static/mathjax by tools.site (offline).
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "sphinx_book_theme"
html_title = "Nested Hash Layer tutorial"
html_static_path = ["_static"]
html_css_files = ["nhl-site.css"]
html_favicon = "_static/favicon.svg"  # else the browser asks for /favicon.ico (a 404)
html_context = {"default_mode": "light"}  # a mode from the start (the theme logs an error without)
html_last_updated_fmt = None
html_show_sourcelink = False
html_copy_source = True  # the theme's download button gives the .ipynb
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "use_source_button": False,
    "navigation_with_keys": False,
}
