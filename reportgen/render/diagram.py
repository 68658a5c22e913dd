"""The LoRA diagram, drawn by reportgen itself: frozen W (m x n) beside B (m x r) times A (r x n)."""

from __future__ import annotations

from markupsafe import escape

from ..data import ModuleRow

SIDE = 150  # pixels of the longer side of W
MIN_SIDE = 28  # pixels: a very flat matrix stays visible
RANK_PX = 14  # r is drawn as a thin strip; not to scale (r is far smaller than m and n)
GAP = 34
LABEL_W = 150  # pixels: room for "m x n = 8,192 x 2,048"
LABEL_B = 90  # pixels: room for "8,192 x r"
TOP = 34
FROZEN = "#c9d3dd"
ADAPTER_B = "#E69F00"
ADAPTER_A = "#0072B2"


def _box(x: float, y: float, width: float, height: float, fill: str) -> str:
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
            f'fill="{fill}" stroke="#333" stroke-width="1"/>')


def _text(x: float, y: float, text: str, size: int = 13, weight: str = "normal", anchor: str = "middle") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" font-weight="{weight}" '
            f'text-anchor="{anchor}">{escape(text)}</text>')


def lora_diagram(module: ModuleRow) -> str:
    """An SVG of W (m x n) frozen, plus the trainable B (m x r) times A (r x n), with the module's sizes."""
    out_features, in_features = module.shape  # (m, n)
    scale = SIDE / max(out_features, in_features)
    height = max(out_features * scale, MIN_SIDE)
    width = max(in_features * scale, MIN_SIDE)
    column_w = max(width, LABEL_W)  # each matrix sits centred in a column wide enough for its label
    centre_w = 10 + column_w / 2
    centre_b = 10 + column_w + GAP + LABEL_B / 2
    centre_a = 10 + column_w + 2 * GAP + LABEL_B + column_w / 2
    total_width = 10 + 2 * column_w + 2 * GAP + LABEL_B + 10
    bottom = TOP + height
    middle = TOP + height / 2
    parts = [
        _text(10, 18, f"{module.tag}: one layer's weight and its LoRA adapter", size=12, anchor="start"),
        _box(centre_w - width / 2, TOP, width, height, FROZEN),
        _text(centre_w, middle + 6, "W", size=18, weight="bold"),
        _text(10 + column_w + GAP / 2, middle + 7, "+", size=22),
        _box(centre_b - RANK_PX / 2, TOP, RANK_PX, height, ADAPTER_B),
        _text(10 + column_w + GAP * 1.5 + LABEL_B, middle + 7, "×", size=22),
        _box(centre_a - width / 2, TOP, width, RANK_PX, ADAPTER_A),
        _text(centre_w, bottom + 20, f"m x n = {out_features:,} x {in_features:,}", size=12),
        _text(centre_w, bottom + 37, "frozen", size=12),
        _text(centre_b, bottom + 20, "B", size=13, weight="bold"),
        _text(centre_b, bottom + 37, f"{out_features:,} x r", size=12),
        _text(centre_a, TOP + RANK_PX + 20, "A", size=13, weight="bold"),
        _text(centre_a, TOP + RANK_PX + 37, f"r x {in_features:,}", size=12),
        _text(10, bottom + 62, "trained: B and A, r·(m + n) weights (r not drawn to scale)", size=12, anchor="start"),
    ]
    total_height = bottom + 74
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lora-diagram" role="img" '
        f'width="{total_width:.0f}" height="{total_height:.0f}" viewBox="0 0 {total_width:.0f} {total_height:.0f}" '
        f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">'
        f"<title>LoRA on {escape(module.tag)}: W ({out_features} x {in_features}) frozen, "
        f"plus B ({out_features} x r) times A (r x {in_features}) trained</title>"
        + "".join(parts)
        + "</svg>\n"
    )
