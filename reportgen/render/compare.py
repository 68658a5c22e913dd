"""Methods side by side: every method of the study at every scenario and rank, read by both page formats.

Part of the view model (``view.py`` builds the rest of the page): the rows,
footnotes and labels are arranged here once, so the HTML and the Markdown
show the same content and no template does arithmetic. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data import Cell, ModelReport, Scenario

# How the report names PEFT's methods; a matrix file's own variant names are shown as given.
PEFT_TITLES = {"lora": "LoRA", "dora": "DoRA", "rslora": "rsLoRA", "loha": "LoHa", "lokr": "LoKr",
               "vera": "VeRA", "ia3": "IA3"}


def method_title(name: str) -> str:
    """A method as the report names it: LoRA, DoRA, rsLoRA (a custom variant keeps its own name)."""
    return PEFT_TITLES.get(name, name)


@dataclass(frozen=True)
class MethodColumn:
    """One method of the study, with the options it sets beyond PEFT's defaults."""

    name: str
    options: tuple[tuple[str, str], ...]

    @property
    def title(self) -> str:
        return method_title(self.name)

    @property
    def options_label(self) -> str:
        """The non-default options as PEFT spells them: use_dora=True ("" for none)."""
        return ", ".join(f"{key}={value}" for key, value in self.options)


@dataclass(frozen=True)
class SideCell:
    """One method's cell in the side-by-side table, with its footnote and its difference from the first method."""

    cell: Cell
    footnote: int  # number of the note under the table (why not applicable, or the disagreement); 0 for none
    versus: int | None  # trainables minus the first method's at the same scenario and rank; None where either has none


@dataclass(frozen=True)
class SideRow:
    """One scenario at one rank, every method of the study in column order."""

    scenario: Scenario
    rank: int
    cells: tuple[SideCell, ...]
    first: bool  # the scenario's first rank: the row that names the scenario


@dataclass(frozen=True)
class ScalingEntry:
    """The scaling of one method's update at one rank: alpha/r, or alpha/sqrt(r) with rsLoRA."""

    cell: Cell

    @property
    def label(self) -> str:
        """α/r = 16/8 = 2.00, or α/√r = 16/√8 = 5.66 with what α/r would give; "-" for a method without."""
        cell = self.cell
        if cell.scaling is None or cell.alpha is None or cell.plain_scaling is None:
            return "-"
        alpha = f"{cell.alpha:g}"
        if cell.rank_stabilised:
            return f"α/√r = {alpha}/√{cell.rank} = {cell.scaling:.2f} (α/r would give {cell.plain_scaling:.2f})"
        return f"α/r = {alpha}/{cell.rank} = {cell.scaling:.2f}"


@dataclass(frozen=True)
class ScalingRow:
    """One method's scaling at every rank of the study."""

    column: MethodColumn
    entries: tuple[ScalingEntry, ...]


@dataclass(frozen=True)
class MethodsView:
    """The methods section: the side-by-side table, its footnotes, and each method's scaling."""

    columns: tuple[MethodColumn, ...]
    rows: tuple[SideRow, ...]
    notes: tuple[str, ...]  # footnote texts; SideCell.footnote n refers to notes[n - 1]
    scaling: tuple[ScalingRow, ...]
    ranks: tuple[int, ...]

    @property
    def shown(self) -> bool:
        """Whether the section is on the page: only when the study compares more than one method."""
        return len(self.columns) > 1

    @property
    def first_title(self) -> str:
        """The method every other column is compared with."""
        return self.columns[0].title if self.columns else ""

    @property
    def rowspan(self) -> int:
        return len(self.ranks)


def method_columns(report: ModelReport) -> tuple[MethodColumn, ...]:
    """The study's methods in order, each with the options its cells record."""
    options = {cell.method: cell.options for cell in report.cells}
    return tuple(MethodColumn(name, options.get(name, ())) for name in report.methods)


def _trainable(cell: Cell) -> int | None:
    return cell.formula_trainable if cell.applicable else None


def _versus(cell: Cell, first: Cell) -> int | None:
    ours, theirs = _trainable(cell), _trainable(first)
    return None if ours is None or theirs is None else ours - theirs


def side_rows(report: ModelReport, columns: tuple[MethodColumn, ...]) -> tuple[tuple[SideRow, ...], tuple[str, ...]]:
    """Every scenario at every rank with each method's cell, and the footnotes those cells refer to."""
    notes: list[str] = []
    rows: list[SideRow] = []
    for scenario in report.scenarios:
        for index, rank in enumerate(report.ranks):
            cells = [report.cell(scenario.name, rank, column.name) for column in columns]
            side: list[SideCell] = []
            for cell in cells:
                footnote = 0
                if not cell.confirmed:
                    text = cell.check_label
                    if text not in notes:
                        notes.append(text)
                    footnote = notes.index(text) + 1
                side.append(SideCell(cell, footnote, _versus(cell, cells[0])))
            rows.append(SideRow(scenario, rank, tuple(side), index == 0))
    return tuple(rows), tuple(notes)


def scaling_rows(report: ModelReport, columns: tuple[MethodColumn, ...]) -> tuple[ScalingRow, ...]:
    """Each method's scaling at every rank (the first scenario's cell: scaling does not depend on targets)."""
    if not report.scenarios:
        return ()
    first = report.scenarios[0].name
    return tuple(
        ScalingRow(column, tuple(ScalingEntry(report.cell(first, rank, column.name)) for rank in report.ranks))
        for column in columns
    )


def methods_view(report: ModelReport) -> MethodsView:
    """The methods section of one model's page."""
    columns = method_columns(report)
    rows, notes = side_rows(report, columns) if len(columns) > 1 else ((), ())
    scaling = scaling_rows(report, columns) if len(columns) > 1 else ()
    return MethodsView(columns, rows, notes, scaling, report.ranks)
