"""Plots for the tutorials, one module per topic (import the one you need, e.g.
``from nhl.plots import retrieval``). Every figure labels its axes.
"""

from __future__ import annotations


def style(dpi: int = 80) -> None:
    """The tutorials' look: seaborn's whitegrid theme, modest dpi so notebooks stay small."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    mpl.rcParams["figure.dpi"] = dpi
    mpl.rcParams["savefig.dpi"] = dpi
    mpl.rcParams["figure.figsize"] = (7.0, 4.0)
