"""The call path of a trace as a small SVG drawn here: one box per function the page
passes through, in order, with the step that carried it on each arrow."""

from __future__ import annotations

from markupsafe import Markup, escape

from analyzer.model import TraceStep

BOX_W, BOX_H, GAP, PAD = 420, 40, 34, 10
LABEL_W = 640  # room right of the arrows for the step that carried the page
MAX_LABEL = 110


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def call_path_svg(trace: tuple[TraceStep, ...]) -> Markup:
    # (function, its first location, the step that carried the page into it: the last
    # step of the function before)
    hops: list[tuple[str, str, str]] = []
    previous: TraceStep | None = None
    for s in trace:
        where = f"{s.location.path}:{s.location.line}"
        if not hops or hops[-1][0] != s.function:
            hops.append((s.function, where, previous.note if previous is not None else ""))
        previous = s
    width = BOX_W + 2 * PAD + LABEL_W
    height = PAD * 2 + len(hops) * BOX_H + max(len(hops) - 1, 0) * GAP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="callpath" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="call path of the trace">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
    ]
    for i, (fn, where, note) in enumerate(hops):
        y = PAD + i * (BOX_H + GAP)
        last = i == len(hops) - 1
        cls = "hop last" if last else "hop"
        parts.append(
            f'<g class="{cls}"><rect x="{PAD}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text x="{PAD + 10}" y="{y + 17}" class="fn">{escape(fn)}()</text>'
            f'<text x="{PAD + 10}" y="{y + 32}" class="where">{escape(where)}</text></g>'
        )
        if i:
            y0 = y - GAP
            parts.append(
                f'<line x1="{PAD + 40}" y1="{y0}" x2="{PAD + 40}" y2="{y - 2}" '
                'class="edge" marker-end="url(#arrow)"/>'
                f'<text x="{PAD + 52}" y="{y0 + GAP // 2 + 4}" class="label">'
                f"{escape(_short(note, MAX_LABEL))}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
