"""Per-image results and summary tables (Markdown / JSON / CSV), metric settings in the header.

Layout follows the paper: one column per degradation combination (synthetic suites, Table 1) or
per dataset (paired benchmarks, Tables 2-3), plus an ``Average`` column; one row per method, the
first row (``Input``) scoring the degraded input itself against the target so the gain of every
method is visible. Each cell is ``PSNR/SSIM``, the mean over the images of that column.
``Average`` is the mean of the column means (every degradation/dataset weighs the same, as in the
paper), and ``Gain`` is a method's average PSNR minus the input's.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from interir.degradations.pipeline import combination_rank
from interir.metrics.image import MetricSettings

__all__ = [
    "ImageResult",
    "Cell",
    "SummaryTable",
    "summarize",
    "write_csv",
    "read_csv",
    "INPUT_ROW",
    "AVERAGE",
    "CombinedTable",
    "Shortfall",
    "combine_tables",
]

INPUT_ROW = "Input"
AVERAGE = "Average"
CSV_FIELDS = (
    "model",
    "dataset",
    "combination",
    "name",
    "levels",
    "input_psnr",
    "input_ssim",
    "output_psnr",
    "output_ssim",
)


@dataclass
class ImageResult:
    """Scores of one restored image.

    Attributes:
        model: method name (row of the summary table).
        dataset: dataset name (folder name unless given).
        combination: degradation combination for synthetic suites (``"haze+rain"``), ``""`` for
            paired folders.
        name: image name (stem) inside its dataset/combination.
        levels: degradation levels when known (from a synthetic suite's manifest), else ``None``.
        input_psnr, input_ssim: degraded input vs target.
        output_psnr, output_ssim: restored image vs target.
    """

    model: str
    dataset: str
    combination: str
    name: str
    levels: dict | None
    input_psnr: float
    input_ssim: float
    output_psnr: float
    output_ssim: float

    @property
    def column_key(self) -> tuple[str, str]:
        return (self.dataset, self.combination)


@dataclass
class Cell:
    """Mean PSNR (dB) and SSIM over ``n`` images."""

    psnr: float
    ssim: float
    n: int

    def format(self, psnr_digits: int = 2, ssim_digits: int = 4) -> str:
        p = "inf" if math.isinf(self.psnr) else f"{self.psnr:.{psnr_digits}f}"
        return f"{p}/{self.ssim:.{ssim_digits}f}"

    def to_dict(self) -> dict:
        return {"psnr": _enc(self.psnr), "ssim": _enc(self.ssim), "n": self.n}

    @classmethod
    def from_dict(cls, d: dict) -> "Cell":
        return cls(psnr=_dec(d["psnr"]), ssim=_dec(d["ssim"]), n=int(d["n"]))


def _enc(x: float):
    # JSON has no infinity/NaN: store them as strings that round-trip.
    return x if math.isfinite(x) else str(x)


def _dec(x) -> float:
    return float(x)


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")


def _mean_cell(cells: list[Cell]) -> Cell:
    return Cell(
        psnr=_mean([c.psnr for c in cells]) if not any(math.isinf(c.psnr) for c in cells)
        else float("inf"),
        ssim=_mean([c.ssim for c in cells]),
        n=sum(c.n for c in cells),
    )


@dataclass
class SummaryTable:
    """Methods x columns table of mean PSNR/SSIM.

    Attributes:
        settings: metric convention, printed in the header.
        columns: column labels in display order (combinations or datasets), without ``Average``.
        rows: method names in display order; ``Input`` first when present.
        cells: ``cells[row][column]`` -> :class:`Cell` (a method may miss a column).
        title: heading of the Markdown table.
        notes: extra lines printed under the header.
    """

    settings: MetricSettings
    columns: list[str]
    rows: list[str]
    cells: dict[str, dict[str, Cell]]
    title: str = "Evaluation"
    notes: list[str] = field(default_factory=list)

    def average(self, row: str) -> Cell | None:
        """Mean of the row's column means, ``None`` unless the row has every column."""
        row_cells = self.cells.get(row, {})
        if not self.columns or any(c not in row_cells for c in self.columns):
            return None
        return _mean_cell([row_cells[c] for c in self.columns])

    def gain(self, row: str) -> float | None:
        """Average PSNR of ``row`` minus the ``Input`` row's, in dB."""
        a, b = self.average(row), self.average(INPUT_ROW)
        if a is None or b is None or math.isinf(a.psnr) or math.isinf(b.psnr):
            return None
        return a.psnr - b.psnr

    # ----------------------------------------------------------------- Markdown
    def to_markdown(self) -> str:
        """The table in GitHub Markdown, metric settings in the header, best method in bold."""
        lines = [f"## {self.title}", "", f"Metric settings: {self.settings.describe()}.", ""]
        lines.append(
            "Cells: PSNR (dB) / SSIM, mean over the images of the column. "
            f"`{AVERAGE}`: mean of the column means. `Gain`: average PSNR minus the "
            f"`{INPUT_ROW}` row (the degraded input scored against the target)."
        )
        lines.extend(self.notes)
        lines.append("")
        has_input = INPUT_ROW in self.rows
        header = ["Method", *self.columns, AVERAGE] + (["Gain (dB)"] if has_input else [])
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join([":---"] + [":---:"] * (len(header) - 1)) + "|")
        best = self._best()
        for row in self.rows:
            out = [row]
            for col in [*self.columns, AVERAGE]:
                cell = self.average(row) if col == AVERAGE else self.cells.get(row, {}).get(col)
                if cell is None:
                    out.append("–")
                    continue
                text = cell.format()
                if row != INPUT_ROW and best.get(col) == row:
                    text = f"**{text}**"
                out.append(text)
            if has_input:
                g = None if row == INPUT_ROW else self.gain(row)
                out.append("" if g is None else f"{g:+.2f}")
            lines.append("| " + " | ".join(out) + " |")
        counts = [str(self._count(c)) for c in self.columns]
        lines.append("")
        lines.append("Images per column: " + ", ".join(
            f"{c} {n}" for c, n in zip(self.columns, counts)) + ".")
        return "\n".join(lines) + "\n"

    def _count(self, column: str) -> int:
        return max((r.get(column).n for r in self.cells.values() if column in r), default=0)

    def _best(self) -> dict[str, str]:
        best: dict[str, str] = {}
        methods = [r for r in self.rows if r != INPUT_ROW]
        if len(methods) < 2:
            return best
        for col in [*self.columns, AVERAGE]:
            scored = []
            for r in methods:
                cell = self.average(r) if col == AVERAGE else self.cells.get(r, {}).get(col)
                if cell is not None and not math.isnan(cell.psnr):
                    scored.append((cell.psnr, r))
            if scored:
                best[col] = max(scored)[1]
        return best

    # --------------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        rows = []
        for row in self.rows:
            avg = self.average(row)
            rows.append({
                "method": row,
                "cells": {c: cell.to_dict() for c, cell in self.cells.get(row, {}).items()},
                "average": None if avg is None else avg.to_dict(),
                "gain_db": None if row == INPUT_ROW else self.gain(row),
            })
        return {
            "title": self.title,
            "metric_settings": {**self.settings.to_dict(), "description": self.settings.describe()},
            "columns": list(self.columns),
            "rows": rows,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SummaryTable":
        return cls(
            settings=MetricSettings.from_dict(data["metric_settings"]),
            columns=list(data["columns"]),
            rows=[r["method"] for r in data["rows"]],
            cells={r["method"]: {c: Cell.from_dict(v) for c, v in r["cells"].items()}
                   for r in data["rows"]},
            title=data.get("title", "Evaluation"),
            notes=list(data.get("notes", [])),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "SummaryTable":
        return cls.from_dict(json.loads(text))


def _column_order(keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    datasets: list[str] = []
    for d, _ in keys:
        if d not in datasets:
            datasets.append(d)

    uniq = sorted(set(keys), key=lambda k: (datasets.index(k[0]), combination_rank(k[1])))
    return uniq


def _labels(keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    datasets = {d for d, _ in keys}
    labels = {}
    for d, c in keys:
        if not c:
            labels[(d, c)] = d
        elif len(datasets) == 1:
            labels[(d, c)] = c
        else:
            labels[(d, c)] = f"{d}/{c}"
    return labels


def summarize(
    results: list[ImageResult],
    settings: MetricSettings,
    *,
    title: str = "Evaluation",
    include_input: bool = True,
    notes: list[str] | None = None,
) -> SummaryTable:
    """Aggregate per-image results into a :class:`SummaryTable`.

    Columns are ``(dataset, combination)`` groups: labelled by the combination when a single
    dataset is evaluated, by the dataset for paired folders, ``dataset/combination`` otherwise.
    Rows are ``Input`` (input vs target, counted once per image) followed by the models in order
    of first appearance.
    """
    keys = _column_order([r.column_key for r in results])
    labels = _labels(keys)
    models: list[str] = []
    for r in results:
        if r.model not in models:
            models.append(r.model)

    cells: dict[str, dict[str, Cell]] = {}
    for model in models:
        for key in keys:
            rs = [r for r in results if r.model == model and r.column_key == key]
            if rs:
                cells.setdefault(model, {})[labels[key]] = _aggregate(
                    [r.output_psnr for r in rs], [r.output_ssim for r in rs])
    rows = list(models)
    if include_input and results:
        seen: dict[tuple[str, str, str], ImageResult] = {}
        for r in results:
            seen.setdefault((r.dataset, r.combination, r.name), r)
        for key in keys:
            rs = [r for r in seen.values() if r.column_key == key]
            cells.setdefault(INPUT_ROW, {})[labels[key]] = _aggregate(
                [r.input_psnr for r in rs], [r.input_ssim for r in rs])
        rows = [INPUT_ROW, *models]
    return SummaryTable(
        settings=settings,
        columns=[labels[k] for k in keys],
        rows=rows,
        cells=cells,
        title=title,
        notes=list(notes or []),
    )


def _aggregate(psnrs: list[float], ssims: list[float]) -> Cell:
    p = float("inf") if any(math.isinf(x) for x in psnrs) else _mean(psnrs)
    return Cell(psnr=p, ssim=_mean(ssims), n=len(psnrs))


# ---------------------------------------------------------------------------------------- CSV
def write_csv(results: list[ImageResult], path: str | Path) -> Path:
    """One row per (model, image): ``model,dataset,combination,name,levels,input_psnr,...``.

    ``levels`` is a compact JSON object (empty when unknown); PSNR of identical images is ``inf``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for r in results:
            w.writerow([
                r.model, r.dataset, r.combination, r.name,
                "" if r.levels is None else json.dumps(r.levels, sort_keys=True,
                                                       separators=(",", ":")),
                f"{r.input_psnr:.6f}", f"{r.input_ssim:.8f}",
                f"{r.output_psnr:.6f}", f"{r.output_ssim:.8f}",
            ])
    return path


def read_csv(path: str | Path) -> list[ImageResult]:
    """Inverse of :func:`write_csv` (values rounded to the digits written)."""
    out = []
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            out.append(ImageResult(
                model=row["model"], dataset=row["dataset"], combination=row["combination"],
                name=row["name"], levels=json.loads(row["levels"]) if row["levels"] else None,
                input_psnr=float(row["input_psnr"]), input_ssim=float(row["input_ssim"]),
                output_psnr=float(row["output_psnr"]), output_ssim=float(row["output_ssim"]),
            ))
    return out


# ------------------------------------------------------------------------------ combined tables
@dataclass
class Shortfall:
    """A column where ``method`` does not beat ``rival`` on PSNR (ties count as not beating)."""

    column: str
    rival: str
    method_psnr: float
    rival_psnr: float


@dataclass
class CombinedTable:
    """Several summary tables side by side: one row per method, every table's columns.

    Built by :func:`combine_tables`. A column keeps the metric convention of its source table
    (``(RGB)`` or ``(Y)`` in its label); each source table also contributes its own ``Average``.
    """

    title: str
    columns: list[str]
    rows: list[str]
    cells: dict[str, dict[str, Cell]]
    sources: list[str]

    def shortfalls(self, method: str, rivals: list[str]) -> list[Shortfall]:
        """Columns (averages excluded) where ``method`` has a PSNR not above a rival's."""
        out = []
        mine = self.cells.get(method, {})
        for col in self.columns:
            if col.startswith(AVERAGE) or col not in mine:
                continue
            for rival in rivals:
                theirs = self.cells.get(rival, {}).get(col)
                if theirs is not None and not mine[col].psnr > theirs.psnr:
                    out.append(Shortfall(col, rival, mine[col].psnr, theirs.psnr))
        return out

    def to_markdown(self, check: str | None = None, rivals: list[str] | None = None) -> str:
        """GitHub Markdown; the best PSNR of each column in bold; with ``check``, a line saying
        where that method fails to beat each of ``rivals`` (default: every other row)."""
        lines = [f"## {self.title}", "", "Cells: PSNR (dB) / SSIM, mean over the images of the column.", ""]
        lines += [f"- [{i + 1}] {s}" for i, s in enumerate(self.sources)]
        lines.append("")
        lines.append("| Method | " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join([":---"] + [":---:"] * len(self.columns)) + "|")
        best: dict[str, str] = {}
        for col in self.columns:
            scored = [(self.cells[r][col].psnr, r) for r in self.rows
                      if r != INPUT_ROW and col in self.cells.get(r, {})]
            if len(scored) > 1:
                best[col] = max(scored)[1]
        for row in self.rows:
            out = [row]
            for col in self.columns:
                cell = self.cells.get(row, {}).get(col)
                text = "–" if cell is None else cell.format()
                out.append(f"**{text}**" if best.get(col) == row else text)
            lines.append("| " + " | ".join(out) + " |")
        if check is not None:
            rivals = rivals if rivals is not None else [r for r in self.rows if r != check]
            misses = self.shortfalls(check, rivals)
            lines.append("")
            if not misses:
                lines.append(f"{check} beats {', '.join(rivals)} on the PSNR of every column.")
            else:
                lines.append(f"{check} does not beat, on PSNR: " + "; ".join(
                    f"{m.rival} on {m.column} ({m.method_psnr:.2f} vs {m.rival_psnr:.2f})" for m in misses) + ".")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "sources": list(self.sources),
            "columns": list(self.columns),
            "rows": [{"method": r, "cells": {c: v.to_dict() for c, v in self.cells.get(r, {}).items()}}
                     for r in self.rows],
        }


def _convention(settings: MetricSettings) -> str:
    return "Y" if settings.y_channel else "RGB"


def combine_tables(tables: list[SummaryTable], title: str = "Comparison") -> CombinedTable:
    """Put summary tables side by side, one row per method (``Input`` first, then the methods in
    order of first appearance).

    Tables with the same columns and metric convention (say two ``interir eval`` runs of
    different models on CBSD68-MDIR) are merged into one part; different parts (a synthetic
    suite on RGB, real benchmarks on Y) sit side by side. Every column is labelled with its
    convention, ``"noise (RGB)"``, and each part ends with ``"Average [k] (RGB)"``, the mean of
    its columns.

    Raises:
        ValueError: no tables; a method scored twice on one column; ``Input`` rows that disagree
            (the tables were made from different data).
    """
    if not tables:
        raise ValueError("nothing to combine: give one or more summary tables")
    parts: list[tuple[str, tuple[str, ...], list[SummaryTable]]] = []
    for table in tables:
        key = (_convention(table.settings), tuple(table.columns))
        for tag, cols, members in parts:
            if (tag, cols) == key:
                members.append(table)
                break
        else:
            parts.append((key[0], key[1], [table]))
    columns: list[str] = []
    rows: list[str] = []
    cells: dict[str, dict[str, Cell]] = {}
    sources = []
    for k, (tag, cols, members) in enumerate(parts, start=1):
        sources.append(f"{members[0].title}: {members[0].settings.describe()}")
        labels = {c: f"{c} ({tag})" for c in cols}
        clash = [lab for lab in labels.values() if lab in columns]
        if clash:
            raise ValueError(f"columns {clash} appear in tables with different column sets; "
                             "evaluate those datasets together or keep them in separate tables")
        average = f"{AVERAGE} [{k}] ({tag})"
        columns += [*labels.values(), average]
        for table in members:
            for row in table.rows:
                if row not in rows:
                    rows.append(row)
                dest = cells.setdefault(row, {})
                for c, cell in table.cells.get(row, {}).items():
                    label = labels[c]
                    if label in dest:
                        if row != INPUT_ROW:
                            raise ValueError(f"{row!r} is scored twice on {label!r}; give each run's "
                                             "models distinct labels (-m LABEL=SPEC)")
                        if abs(dest[label].psnr - cell.psnr) > 1e-4 or dest[label].n != cell.n:
                            raise ValueError(f"the Input rows disagree on {label!r} "
                                             f"({dest[label].psnr:.4f} vs {cell.psnr:.4f} dB): the tables "
                                             "were made from different images or settings")
                    dest[label] = cell
        for row in rows:
            row_cells = cells.get(row, {})
            if all(labels[c] in row_cells for c in cols):
                row_cells[average] = _mean_cell([row_cells[labels[c]] for c in cols])
    if INPUT_ROW in rows:
        rows.remove(INPUT_ROW)
        rows.insert(0, INPUT_ROW)
    return CombinedTable(title=title, columns=columns, rows=rows, cells=cells, sources=sources)
