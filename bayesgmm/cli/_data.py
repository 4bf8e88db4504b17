"""Reading the data a command is given and choosing its columns, refusing what cannot be fitted."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bayesgmm.cli._errors import CliError

if TYPE_CHECKING:
    import pandas as pd

_KINDS = {".parquet": "Parquet", ".pq": "Parquet", ".npy": "NumPy .npy"}


def read_data(source: str) -> pd.DataFrame:
    """Read a bundled data set by name, or a CSV, Parquet or ``.npy`` file, as a data frame.

    Parameters
    ----------
    source : str
        A name of :func:`bayesgmm.datasets.dataset_names` or a path; the suffix picks the
        reader (``.parquet``/``.pq``, ``.npy``, anything else is read as CSV).

    Returns
    -------
    pandas.DataFrame
        With at least one row and column; a ``.npy`` array's columns are named ``x0, x1, ...``.

    Raises
    ------
    CliError
        For a missing, empty, unreadable or undecodable file, or a directory.
    """
    from bayesgmm.datasets import dataset_names, load_dataset

    if source in dataset_names() and not os.path.exists(source):
        return load_dataset(source, as_frame=True)
    path = Path(source)
    if not path.exists():
        raise CliError(
            f"--data {source!r} is neither a bundled data set ({', '.join(dataset_names())}) "
            "nor an existing file: check the name or path."
        )
    if path.is_dir():
        raise CliError(f"--data {source} is a directory: give a .csv, .parquet or .npy file.")
    if path.stat().st_size == 0:
        raise CliError(f"--data {source} is an empty file: give a file with a header row and data rows.")
    kind = _KINDS.get(path.suffix.lower(), "CSV")
    try:
        frame = _read(path, kind)
    except CliError:
        raise
    except Exception as err:  # pandas, pyarrow and numpy each raise their own on bad files
        raise CliError(
            f"cannot read --data {source} as a {kind} file ({type(err).__name__}: {err}); give a CSV "
            "(text with a header row), a Parquet or a .npy file, named by its suffix."
        ) from err
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise CliError(f"--data {source} holds no data (shape {frame.shape}): give a file with data rows.")
    return frame


def _read(path: Path, kind: str) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    if kind == "Parquet":
        return pd.read_parquet(path)
    if kind == "CSV":
        return pd.read_csv(path)
    arr = np.load(path, allow_pickle=False)
    if arr.ndim not in (1, 2):
        raise CliError(
            f"--data {path} holds an array of shape {arr.shape}: give a 2-D (n_obs, n_features) one."
        )
    arr = arr.reshape(len(arr), -1)
    return pd.DataFrame(arr, columns=[f"x{j}" for j in range(arr.shape[1])])


def _is_number_column(column: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _first_non_number(column: pd.Series) -> tuple[int, object, int]:
    """Position and value of the first entry that is not a number, and how many entries are numbers."""
    import pandas as pd

    parsed = pd.to_numeric(column, errors="coerce")
    bad = (parsed.isna() & column.notna()).to_numpy()
    first = int(bad.argmax())
    return first, column.iloc[first], int(parsed.notna().sum())


def _check_number_column(column: pd.Series, name: str) -> None:
    """Refuse a text column, saying whether it holds text or a number with a typo, and where."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column):
        raise CliError(f"column {name!r} holds True/False, not numbers: encode it as 0/1 to fit it.")
    row, value, n_numbers = _first_non_number(column)
    if n_numbers == 0:
        raise CliError(
            f"column {name!r} is not numeric (row {row + 1} holds {value!r}): choose numeric columns "
            "with --columns, or encode this one as numbers."
        )
    raise CliError(
        f"column {name!r} holds {value!r} in data row {row + 1}, which is not a number: correct that "
        "value in the file (or leave the column out with --columns)."
    )


def _looks_numeric(column: pd.Series) -> bool:
    """Whether a text column holds mostly numbers: then its few other entries are typos."""
    _, _, n_numbers = _first_non_number(column)
    return n_numbers > 0 and n_numbers >= 0.5 * column.notna().sum()


def _check_finite(X: pd.DataFrame) -> None:
    import numpy as np

    values = X.to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise CliError(
            f"column {X.columns[col]!r} holds {values[row, col]} (NaN is a missing value) in data row "
            f"{row + 1}, and {int(bad.any(axis=1).sum())} row(s) in all have one: remove or fill them in."
        )


def _parse_columns(columns: str) -> list[str]:
    wanted = [c.strip() for c in columns.split(",") if c.strip()]
    if not wanted:
        raise CliError(f"--columns {columns!r} names no column: give names separated by commas.")
    return wanted


def select_columns(frame: pd.DataFrame, columns: str | list[str] | None) -> pd.DataFrame:
    """Choose the columns to fit: those named, else every numeric one (naming those left out).

    Parameters
    ----------
    frame : pandas.DataFrame
    columns : str, list of str or None
        Comma-separated names (or a list); None takes every numeric column and prints a
        ``bayesgmm: warning:`` line naming the non-numeric columns it leaves out.

    Returns
    -------
    pandas.DataFrame
        Float columns with string names, every value finite.

    Raises
    ------
    CliError
        For a missing or non-numeric column, a number column holding text (with its row),
        missing or infinite values, or data without numeric columns.
    """
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    if columns is not None:
        wanted = _parse_columns(columns) if isinstance(columns, str) else list(columns)
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise CliError(
                f"column(s) {', '.join(missing)} not in the data, whose columns are "
                f"{', '.join(frame.columns)}: correct --columns."
            )
        chosen = frame[wanted]
    else:
        text = [c for c in frame.columns if not _is_number_column(frame[c])]
        for name in text:
            if _looks_numeric(frame[name]):
                _check_number_column(frame[name], name)
        chosen = frame.drop(columns=text)
        if chosen.shape[1] == 0:
            raise CliError(
                f"the data has no numeric column (columns: {', '.join(text)}): encode them as numbers."
            )
        if text:
            print(
                f"bayesgmm: warning: fitting the numeric columns {', '.join(chosen.columns)} and leaving "
                f"out the non-numeric {', '.join(text)}; choose columns with --columns.",
                file=sys.stderr,
            )
    for name in chosen.columns:
        if not _is_number_column(chosen[name]):
            _check_number_column(chosen[name], name)
    chosen = chosen.astype(float)
    _check_finite(chosen)
    return chosen


def check_writable(path: str, option: str) -> None:
    """Make sure a file can be written at ``path`` before any work is done for it.

    Parameters
    ----------
    path : str
    option : str
        The option that gave the path, for the message (``--output``).

    Raises
    ------
    CliError
        When ``path`` is a directory, its folder does not exist or the file cannot be opened
        for writing. A file that did not exist is removed again.
    """
    target = Path(path)
    if target.is_dir():
        raise CliError(f"{option} {path} is a directory: give a file name.")
    if not target.parent.is_dir():
        raise CliError(
            f"{option} {path}: the folder {target.parent} does not exist; create it or choose another."
        )
    existed = target.exists()
    try:
        with open(target, "a"):
            pass
    except OSError as err:
        raise CliError(f"cannot write {option} {path} ({err.strerror}): choose a writable path.") from err
    if not existed:
        target.unlink()


def prepare_dir(path: str, option: str) -> Path:
    """Create the folder ``path`` if needed and check that files can be written in it.

    Parameters
    ----------
    path : str
    option : str
        The option that gave the path, for the message.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    CliError
        When the folder cannot be created or written to.
    """
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CliError(f"cannot create {option} {path} ({err.strerror}): choose another folder.") from err
    check_writable(str(folder / ".bayesgmm-write-test"), option)
    return folder
