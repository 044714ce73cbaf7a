"""A table from a CSV file of the user's: ``data=csv data.path=FILE data.target=COLUMN``.

The first line names the columns. Cells are separated by ``data.delimiter``: ``auto`` (the
default) takes the one of ``, ; tab |`` that splits the header and the first rows into the same
number of columns, the most columns of them, preferring ``,``. Numeric columns are features as they are (standardized with
training statistics); text columns are one-hot encoded. The task follows the target column unless
``data.task`` says otherwise: text, or integers with few distinct values, make a classification;
other numbers a regression. Any value that does not fit is reported with its file, line (1-based,
the header is line 1) and column, and nothing is filled in silently.

Read with the standard library's csv module: the files dltrain expects are small enough, and
there is no pandas to depend on.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from dltrain.data import preprocess
from dltrain.data.base import DataInfo, DataSplits
from dltrain.data.prepare import split_and_standardize
from dltrain.data.registry import DATASETS
from dltrain.errors import UserError
from dltrain.registry import did_you_mean
from dltrain.schema import CSVDataConfig
from dltrain.schema.data import DELIMITER_NAMES

# spellings of a missing value: dltrain refuses them rather than guess a fill
MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}
# a text feature with more distinct values than this is a name or an id, not a category
MAX_CATEGORIES = 50
# an integer target is a class label when it has at most this many distinct values (and fewer
# than half as many as there are rows); otherwise it is a count to regress on
MAX_INTEGER_CLASSES = 20
_INTEGER = re.compile(r"^[+-]?\d+$")
# the delimiters data.delimiter=auto chooses among (comma first: it wins a tie), and the lines
# it reads to choose
DELIMITERS = (",", ";", "\t", "|")
DELIMITER_WORDS = {character: word for word, character in DELIMITER_NAMES.items() if word.isalpha()}
SNIFF_LINES = 50


@dataclass
class Column:
    name: str
    values: List[str]  # stripped, one per data row


@dataclass
class Table:
    path: Path
    columns: List[Column]
    lines: List[int]  # the line of each data row in the file

    def where(self, row: int, column: str) -> str:
        return f"{self.path}, line {self.lines[row]}, column {column!r}"


def detect_delimiter(lines: List[str], complete: bool) -> str:
    """The one of :data:`DELIMITERS` that splits the header of ``lines`` (the first lines of a
    file; ``complete`` when they are all of it) into the most columns, and every row after it
    into as many; ``,`` when none does (the row of the wrong width is then reported)."""
    best, best_width = ",", 1
    for delimiter in DELIMITERS:
        try:
            rows = [row for row in csv.reader(lines, delimiter=delimiter)
                    if any(cell.strip() for cell in row)]
        except csv.Error:
            continue
        if not rows:
            continue
        checked = rows[1:] if complete else rows[1:-1]  # the last may be cut by the sample's end
        width = len(rows[0])
        if width > best_width and all(len(row) == width for row in checked):
            best, best_width = delimiter, width
    return best


def delimiter_of(option: str) -> Optional[str]:
    """data.delimiter's character, or None for auto."""
    return None if option == "auto" else DELIMITER_NAMES.get(option, option)


def csv_rows(f: IO[str], name: str, delimiter: Optional[str] = None) -> Iterator[Tuple[int, List[str]]]:
    """The rows of the open CSV file ``f`` (``name`` in messages) as (the line where the row
    starts, its stripped cells): the header line first, then each data row, checked to have as
    many fields as the header. Blank lines are not rows. Read lazily, one row at a time; the
    ``delimiter`` is detected from the first lines (:func:`detect_delimiter`) when not given."""
    width: Optional[int] = None
    last = 0
    try:
        lines: Iterable[str] = f
        if delimiter is None:
            head = list(itertools.islice(f, SNIFF_LINES))
            delimiter = detect_delimiter(head, complete=len(head) < SNIFF_LINES)
            lines = itertools.chain(head, f)
        reader = csv.reader(lines, delimiter=delimiter)
        for row in reader:
            first_line, last = last + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # blank lines are not rows
            if width is None:
                width = len(row)
            elif len(row) != width:
                raise UserError(f"{name}, line {first_line}: {len(row)} fields, but the header "
                                f"line names {width} columns")
            yield first_line, [cell.strip() for cell in row]
    except UnicodeDecodeError as e:
        raise UserError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise UserError(f"{name}, line {reader.line_num}: {e}") from None


def check_header(header: List[str], name: str) -> None:
    for i, column in enumerate(header):
        if not column:
            raise UserError(f"{name}: column {i + 1} has no name in the header line")
        if header.index(column) != i:
            raise UserError(f"{name}: the header names column {column!r} twice")


def is_missing(cell: str) -> bool:
    return cell.lower() in MISSING


def missing_value(where: str, cell: str, advice: str) -> UserError:
    shown = f"{cell!r}" if cell else "an empty cell"
    return UserError(f"{where}: missing value ({shown}); dltrain does not fill in missing values: "
                     + advice)


def read_table(path: Path, delimiter: Optional[str] = None) -> Table:
    """The cells of ``path`` as text, checked for shape and missing values; ``delimiter`` as
    :func:`csv_rows` takes it."""
    if not path.exists():
        raise UserError(f"data.path={path}: no such file")
    if path.is_dir():
        raise UserError(f"data.path={path} is a folder; data=csv needs a CSV file")
    header: Optional[List[str]] = None
    rows: List[List[str]] = []
    lines: List[int] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for first_line, cells in csv_rows(f, str(path), delimiter):
                if header is None:
                    header = cells
                    continue
                rows.append(cells)
                lines.append(first_line)
    except OSError as e:
        raise UserError(f"data.path={path}: cannot read it: {e.strerror or e}") from None
    if header is None:
        raise UserError(f"{path} is empty: a CSV file needs a header line and data rows")
    if not rows:
        raise UserError(f"{path} has a header line but no data rows")
    check_header(header, str(path))
    table = Table(path, [Column(name, [row[i] for row in rows]) for i, name in enumerate(header)],
                  lines)
    for r, row in enumerate(rows):
        for name, cell in zip(header, row):
            if is_missing(cell):
                raise missing_value(table.where(r, name), cell,
                                    "fill them in or drop those rows")
    return table


def number(text: str) -> Optional[float]:
    """The finite number ``text`` spells, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _numbers(table: Table, column: Column) -> Optional[np.ndarray]:
    """The column as float64 if it holds numbers, None if it holds text; a mostly numeric
    column with a few text cells is a typo, reported at its line."""
    numbers = [number(v) for v in column.values]
    bad = [r for r, v in enumerate(numbers) if v is None]
    if not bad:
        return np.array(numbers, dtype=np.float64)
    if len(bad) * 2 <= len(numbers):
        r = bad[0]
        raise UserError(f"{table.where(r, column.name)}: {column.values[r]!r} is not a number "
                        f"(the column's other values are numbers)")
    return None


def _one_hot(table: Table, column: Column) -> Tuple[np.ndarray, List[str]]:
    categories = sorted(set(column.values))
    if len(categories) > MAX_CATEGORIES:
        raise UserError(
            f"{table.where(0, column.name)}: {column.values[0]!r} is not a number, and the "
            f"column has {len(categories)} distinct text values, too many to one-hot encode "
            f"(at most {MAX_CATEGORIES}); drop the column or turn it into numbers"
        )
    index = {c: i for i, c in enumerate(categories)}
    codes = np.array([index[v] for v in column.values])
    return np.eye(len(categories), dtype=np.float64)[codes], categories


def features(table: Table, target: str) -> Tuple[np.ndarray, np.ndarray, List[Dict[str, Any]]]:
    """``x`` (N, F), the mask of its numeric columns (one-hot columns are not standardized),
    and the feature columns in order: name, and the categories of a text column (None for a
    numeric one), as the preprocessing record keeps them."""
    parts: List[np.ndarray] = []
    numeric: List[np.ndarray] = []
    spec: List[Dict[str, Any]] = []
    for column in table.columns:
        if column.name == target:
            continue
        numbers = _numbers(table, column)
        categories = None
        if numbers is not None:
            block = numbers[:, None]
        else:
            block, categories = _one_hot(table, column)
        parts.append(block)
        numeric.append(np.full(block.shape[1], numbers is not None))
        spec.append({"name": column.name, "categories": categories})
    if not parts:
        raise UserError(f"{table.path} has no feature columns besides the target {target!r}")
    return np.concatenate(parts, axis=1).astype(np.float32), np.concatenate(numeric), spec


def infer_task(table: Table, column: Column) -> str:
    values = column.values
    if all(_INTEGER.match(v) for v in values):
        distinct = len(set(int(v) for v in values))
        few = distinct <= MAX_INTEGER_CLASSES and distinct < len(values) / 2
        return "classification" if few else "regression"
    return "regression" if _numbers(table, column) is not None else "classification"


def _delimiter_hint(header: List[str], delimiter: Optional[str]) -> str:
    """When the header reads as one column that another delimiter would split: say which."""
    if len(header) != 1:
        return ""
    for other in DELIMITERS:
        if other != delimiter and other in header[0]:
            return (f" (one column: is the file separated by {DELIMITER_WORDS[other]}s? "
                    f"set data.delimiter={DELIMITER_WORDS[other]})")
    return ""


def check_labels(table: Table, column: Column) -> None:
    """Refuse data.task=classification on a column of measurements: decimal numbers with more
    distinct values than a set of classes has (each class would hold a row or two, and the
    stratified split would leave val and test empty)."""
    numbers = _numbers(table, column)
    if numbers is None or np.all(numbers == np.round(numbers)):
        return
    distinct = np.unique(numbers)
    if len(distinct) > MAX_INTEGER_CLASSES:
        raise UserError(
            f"data.task=classification, but column {column.name!r} of {table.path} holds "
            f"{len(distinct)} distinct decimal numbers (e.g. {column.values[0]}, "
            f"{column.values[1]}): measurements, not a set of classes; leave data.task=auto to "
            "regress on it, or write class labels into the column")


def classes(column: Column) -> Tuple[np.ndarray, Tuple[str, ...]]:
    """Class indices and names; numeric labels sort as numbers (2 before 10), text as text."""
    distinct = set(column.values)
    as_numbers: Dict[str, float] = {v: n for v in distinct if (n := number(v)) is not None}
    if len(as_numbers) == len(distinct):
        names = sorted(distinct, key=lambda v: (as_numbers[v], v))
    else:
        names = sorted(distinct)
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[v] for v in column.values], dtype=np.int64), tuple(names)


@DATASETS.register("csv")
def load_csv(cfg: CSVDataConfig) -> DataSplits:
    path = Path(cfg.path).expanduser()
    delimiter = delimiter_of(cfg.delimiter)
    table = read_table(path, delimiter)
    by_name = {c.name: c for c in table.columns}
    if cfg.target not in by_name:
        raise UserError(f"data.target={cfg.target!r}: {path} has no such column"
                        f"{did_you_mean(cfg.target, by_name)}; its columns: "
                        + ", ".join(by_name) + _delimiter_hint(list(by_name), delimiter))
    target = by_name[cfg.target]
    task = infer_task(table, target) if cfg.task == "auto" else cfg.task
    if task == "classification" and cfg.task == "classification":
        check_labels(table, target)
    x, numeric, columns = features(table, cfg.target)

    if task == "classification":
        y, class_names = classes(target)
        num_outputs = len(class_names)
        if num_outputs < 2:
            raise UserError(f"{path}, column {cfg.target!r}: every row has the class "
                            f"{class_names[0]!r}; a classification needs at least two")
    else:
        numbers = _numbers(table, target)
        if numbers is None:
            r = next(r for r, v in enumerate(target.values) if number(v) is None)
            raise UserError(f"{table.where(r, cfg.target)}: {target.values[r]!r} is not a number, "
                            "and a regression target must be numeric (data.task=regression)")
        y, class_names, num_outputs = numbers.astype(np.float32)[:, None], (), 1

    info = DataInfo(name="csv", kind="table", input_shape=(x.shape[1],), task=task,
                    num_outputs=num_outputs, class_names=class_names,
                    preprocess=preprocess.table(columns, cfg.target))
    return split_and_standardize(x, y, info, cfg, per="feature", columns=numeric)
