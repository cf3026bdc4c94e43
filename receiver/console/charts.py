"""Bar charts as plain geometry, drawn by the templates as inline SVG (no script, no library).

A chart is a list of columns, each a stack of ``(series, value)``; ``stacked_bars`` turns it into
rectangles in a fixed viewBox plus the axis labels. SVG presentation attributes carry the
colours, so the page needs no inline style (the CSP forbids it).
"""

import dataclasses

#: colour per series, in order of first appearance (colour-blind-safe palette)
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442", "#000000")
WIDTH, HEIGHT = 720, 180
LEFT, BOTTOM, TOP = 40, 24, 10
#: widest bar: a chart of one or two runs still reads as bars
MAX_BAR = 40


@dataclasses.dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclasses.dataclass(frozen=True)
class Chart:
    """What a template needs to draw one chart."""

    title: str
    width: int
    height: int
    rects: tuple
    labels: tuple  # (x, text) under the columns
    top: int  # the largest column total (the y axis runs 0..top)
    legend: tuple  # (colour, series, total)
    total: int

    @property
    def empty(self):
        return self.total == 0


def stacked_bars(title, columns, series=None, label_every=1):
    """A ``Chart`` of ``columns``: ``[(label, {series: value}), ...]``, left to right."""
    order = list(series or [])
    for _, values in columns:
        order.extend(name for name in values if name not in order)
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(order)}
    top = max([sum(values.values()) for _, values in columns] + [0])
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(columns), 1)
    rects, labels = [], []
    for i, (label, values) in enumerate(columns):
        x, base = LEFT + i * step, HEIGHT - BOTTOM
        for name in order:
            value = values.get(name, 0)
            if not value:
                continue
            h = plot_h * value / top
            base -= h
            width = min(step * 0.8, MAX_BAR)
            rects.append(Rect(round(x + (step - width) / 2, 1), round(base, 1), round(width, 1),
                              round(h, 1), colours[name], f"{label}: {name} {value}"))
        if i % label_every == 0:
            labels.append((round(x + step / 2, 1), label))
    totals = {name: sum(values.get(name, 0) for _, values in columns) for name in order}
    legend = tuple((colours[name], name, totals[name]) for name in order)
    return Chart(title, WIDTH, HEIGHT, tuple(rects), tuple(labels), top, legend,
                 sum(totals.values()))
