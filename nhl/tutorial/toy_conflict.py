"""A gradient conflict between code lengths, built by hand in two dimensions (notebook 03).

Three nested codes of 1, 2 and 3 bits all read bit 1 of the hash layer: its two weights
``theta = W_1`` (one row of ``W`` on ``d = 2`` features, a point in the plane) are shared by every
length. Length ``k``'s objective on them is a pull towards its own target point,

    f_k(theta) = ||theta - t_k||^2 / 2,    g_k = theta - t_k,

and the targets are placed so that the 3-bit code wants bit 1 on the other side of the plane
from the 1-bit code (as independent, non-nested targets do: notebook 02, exercise 1). The other
rows of ``W`` sit at their targets already, so their gradients are zero and only ``theta`` moves.

Plain nested training steps along ``-(g_1 + g_2 + g_3)``; from the default start that step
*raises* the 1-bit code's loss (its directional derivative is positive). The dominance-aware
weights of docs/method.md §3, computed by :func:`nhl.weighting.dominance_aware_weights` on the
per-length gradients, scale the 3-bit code down until the step descends for the 1-bit code
again. :func:`draw` shows both steps and a few steps of each; :func:`beta_slider` redraws it for
another ``beta``. Nothing here changes the rule: the weights come from :mod:`nhl.weighting`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..plots.gradients import length_colours
from ..weighting import dominance_alphas, dominance_aware_weights

#: The toy's code lengths: every one reads bit 1.
BITS = (1, 2, 3)
#: Where each length wants bit 1's two weights (1-bit, 2-bit, 3-bit code).
TARGETS = ((1.0, 0.2), (0.6, 1.0), (-2.4, 0.9))
#: The shared weights at the start.
START = (0.0, 0.0)


@dataclass(frozen=True)
class ToyConflict:
    """Three quadratic objectives on one shared 2-D parameter (see the module docstring).

    ``beta=None`` in the methods below means plain nested training (every weight 1); a number
    means the dominance-aware weights with that tolerance (docs/method.md §3, ``norm="own"``).
    """

    targets: Sequence[Sequence[float]] = TARGETS
    start: Sequence[float] = START
    lr: float = 0.15
    bits: Sequence[int] = BITS

    def __post_init__(self):
        t = np.asarray(self.targets, dtype=float)
        if t.shape != (len(self.bits), 2):
            raise ValueError(f"targets must be {len(self.bits)} points in the plane, got shape {t.shape}")
        if np.asarray(self.start, dtype=float).shape != (2,):
            raise ValueError(f"start must be one point in the plane, got {self.start!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def losses(self, theta) -> np.ndarray:
        """``f_k(theta)`` for every length, shape (K,)."""
        d = np.asarray(theta, dtype=float)[None, :] - np.asarray(self.targets, dtype=float)
        return 0.5 * (d * d).sum(axis=1)

    def gradients(self, theta) -> np.ndarray:
        """``g_k = theta - t_k`` on the shared row, shape (K, 2)."""
        return np.asarray(theta, dtype=float)[None, :] - np.asarray(self.targets, dtype=float)

    def layer_gradients(self, theta) -> torch.Tensor:
        """The gradients as :mod:`nhl.weighting` takes them: (K, L_K, d) = (3, 3, 2) in float64,
        row 1 the shared weights, the other rows zero (they sit at their targets)."""
        g = torch.zeros(len(self.bits), self.bits[-1], 2, dtype=torch.float64)
        g[:, 0, :] = torch.as_tensor(self.gradients(theta))
        return g

    def weights(self, theta, beta: float | None = 1.0) -> np.ndarray:
        """The weight of each length at ``theta``: all 1 (``beta=None``) or the rule's."""
        if beta is None:
            return np.ones(len(self.bits))
        return dominance_aware_weights(self.layer_gradients(theta), self.bits, beta=beta).numpy()

    def alphas(self, theta, beta: float = 1.0) -> np.ndarray:
        """The rule's pairwise ``alpha_ij`` at ``theta`` (K x K, upper triangle used)."""
        return dominance_alphas(self.layer_gradients(theta), self.bits, beta=beta).numpy()

    def direction(self, theta, beta: float | None = 1.0) -> np.ndarray:
        """The update direction ``-sum_k w_k g_k`` (a step is ``lr`` times it)."""
        return -(self.weights(theta, beta)[:, None] * self.gradients(theta)).sum(axis=0)

    def slope(self, theta, beta: float | None = 1.0, length: int = 0) -> float:
        """Directional derivative of ``f_length`` (default the shortest) along :meth:`direction`:
        negative means the step lowers that code's loss, positive that it raises it."""
        return float(self.gradients(theta)[length] @ self.direction(theta, beta))

    def path(self, steps: int = 10, beta: float | None = 1.0) -> np.ndarray:
        """``theta`` after 0..steps gradient steps of size ``lr``, shape (steps + 1, 2); the
        weights are recomputed at every step, as training does."""
        out = [np.asarray(self.start, dtype=float)]
        for _ in range(steps):
            out.append(out[-1] + self.lr * self.direction(out[-1], beta))
        return np.stack(out)

    def path_losses(self, steps: int = 10, beta: float | None = 1.0) -> np.ndarray:
        """``f_k`` along :meth:`path`, shape (steps + 1, K)."""
        return np.stack([self.losses(p) for p in self.path(steps, beta)])

    def table(self, beta: float = 1.0, steps: int = 10) -> pd.DataFrame:
        """Plain training against the rule at ``beta``, from the start: the weights, the slope of
        the shortest code's loss along the step, and every length's loss after ``steps`` steps."""
        rows = {}
        for name, b in (("plain (all weights 1)", None), (f"dominance rule, beta = {beta:g}", beta)):
            w = self.weights(self.start, b)
            end = self.path_losses(steps, b)[-1]
            rows[name] = {**{f"w_{n}": w[k] for k, n in enumerate(self.bits)},
                          f"slope of f_{self.bits[0]}": self.slope(self.start, b),
                          **{f"f_{n} after {steps} steps": end[k] for k, n in enumerate(self.bits)}}
        out = pd.DataFrame(rows).T
        out.index.name = f"from theta = {tuple(float(x) for x in self.start)}"
        return out


def draw(toy: ToyConflict, beta: float = 1.0, steps: int = 10, fig: plt.Figure | None = None) -> plt.Figure:
    """Left: the shared weights' plane with the shortest code's loss contours, each length's
    descent direction ``-g_k`` at the start, the combined step without and with the rule, and
    ``steps`` steps of each. Right: the shortest code's loss along those steps."""
    if fig is None:
        fig = plt.figure(figsize=(11.5, 4.6), constrained_layout=True)
    else:
        fig.clear()
    ax, ax2 = fig.subplots(1, 2, width_ratios=(1.35, 1))
    t = np.asarray(toy.targets, dtype=float)
    s = np.asarray(toy.start, dtype=float)
    g = toy.gradients(s)
    plain, rule = toy.path(steps, None), toy.path(steps, beta)
    d_plain, d_rule = toy.direction(s, None), toy.direction(s, beta)
    pts = np.vstack([t, s, s - g, s + d_plain, s + d_rule, plain, rule])
    lo, hi = pts.min(axis=0) - 0.35, pts.max(axis=0) + 0.35
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    f1 = 0.5 * ((xx - t[0, 0]) ** 2 + (yy - t[0, 1]) ** 2)
    cs = ax.contour(xx, yy, f1, levels=8, colors="0.75", linewidths=0.7)
    ax.clabel(cs, fontsize=7, fmt="%.1f")
    short = toy.bits[0]
    colour = length_colours(toy.bits)  # one colour per length, as in every figure of the package
    for k, b in enumerate(toy.bits):
        c = colour[b]
        ax.plot(*t[k], marker="*", ms=14, color=c, mec="k", mew=0.6, ls="none", label=f"target of the {b}-bit code")
        ax.annotate("", s - g[k], s, arrowprops=dict(arrowstyle="-|>", color=c, lw=1.8))
    for d, path, col, name in ((d_plain, plain, "0.5", r"plain: step $-\Sigma_k\, g_k$"),
                               (d_rule, rule, "k", rf"rule ($\beta$ = {beta:.2f}): step $-\Sigma_k\, w_k g_k$")):
        ax.annotate("", s + d, s, arrowprops=dict(arrowstyle="-|>", color=col, lw=2.6))
        ax.plot(path[:, 0], path[:, 1], "o:", ms=4.5, mfc="white", mec=col, color=col, lw=1.1, zorder=5,
                label=f"{name}, then {steps} steps (dots)")
    ax.plot(*s, "o", color="k", ms=6, zorder=6)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_xlabel(r"shared weight $\theta_1$ (bit 1, feature 1)")
    ax.set_ylabel(r"shared weight $\theta_2$ (bit 1, feature 2)")
    ax.set_title(f"Each code pulls bit 1's weights towards its target (arrows $-g_k$);\n"
                 f"grey circles: the {short}-bit code's loss $f_{short}$", fontsize=9)
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2)
    ax.grid(False)
    x = np.arange(steps + 1)
    ax2.plot(x, toy.path_losses(steps, None)[:, 0], "o-", color="0.5", ms=4, label="plain")
    ax2.plot(x, toy.path_losses(steps, beta)[:, 0], "o-", color="k", ms=4, label=f"rule, beta = {beta:.2f}")
    ax2.set_xticks(x)
    ax2.set_xlabel("gradient step (0 = start)")
    ax2.set_ylabel(f"loss of the {short}-bit code $f_{short}$")
    ax2.set_ylim(0, None)
    ax2.set_title(f"The {short}-bit code's loss along the steps", fontsize=9)
    ax2.legend(fontsize=8, loc="center right")
    return fig


def beta_slider(toy: ToyConflict, steps: int = 10, value: float = 1.0):
    """An ipywidgets slider for ``beta`` (0 to 2) that redraws :func:`draw` when released.

    Nothing is drawn until the slider moves (draw the default state above it as a normal output,
    so that a saved or HTML copy shows it)."""
    import ipywidgets as widgets
    from IPython.display import display

    slider = widgets.FloatSlider(value=value, min=0.0, max=2.0, step=0.05, description="beta",
                                 continuous_update=False)
    out = widgets.Output()

    def redraw(change=None):
        with out:
            out.clear_output(wait=True)
            draw(toy, beta=slider.value, steps=steps)
            plt.show()
            display(toy.table(beta=slider.value, steps=steps).round(3))

    slider.observe(redraw, names="value")
    return widgets.VBox([slider, out])
