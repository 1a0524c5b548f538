"""Progress bars: one place that decides how tqdm reports (silenced by ``verbose=0``).

On a terminal (or in a notebook) the bar refreshes as usual. When standard error is a file
or a pipe (CI logs, ``nohup``, SLURM's ``--error`` files) every refresh is a new chunk of
text, so the bar refreshes at most every :data:`LOG_INTERVAL_S` seconds there instead of ten
times a second. The ``TQDM_MININTERVAL`` environment variable overrides this everywhere.
"""

import os
import sys

from tqdm.auto import tqdm

#: Seconds between refreshes when standard error is not a terminal.
LOG_INTERVAL_S = 30.0


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _in_notebook(bar_class) -> bool:
    """Whether ``tqdm.auto`` picked its notebook bar.

    In a notebook ``tqdm.auto.tqdm`` is a class *defined in* ``tqdm.auto`` that derives
    from ``tqdm.notebook.tqdm``, so its own ``__module__`` never says "notebook": look at
    its bases.
    """
    return any(cls.__module__.startswith("tqdm.notebook") for cls in bar_class.__mro__)


def progress(iterable=None, *, verbose=True, **kwargs):
    """A tqdm bar over ``iterable`` (or a manual one with ``total=``), off when not verbose.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over; ``None`` for a bar updated by hand.
    verbose : bool or int, default=True
        ``0``/``False`` disables the bar (unless ``disable`` is given explicitly).
    **kwargs
        Passed to :class:`tqdm.tqdm` (``total``, ``desc``, ``leave``, ``file`` ...).

    Returns
    -------
    bar : tqdm.tqdm

    Examples
    --------
    >>> import io
    >>> log = io.StringIO()                      # not a terminal: few refreshes
    >>> bar = progress(range(3), verbose=1, file=log, desc="demo")
    >>> sum(bar), bar.mininterval
    (3, 30.0)
    >>> progress(range(3), verbose=0).disable
    True
    """
    kwargs.setdefault("disable", not verbose)
    stream = kwargs.get("file") or sys.stderr
    in_notebook = _in_notebook(tqdm)
    if "mininterval" not in kwargs:
        if os.environ.get("TQDM_MININTERVAL"):
            kwargs["mininterval"] = float(os.environ["TQDM_MININTERVAL"])
        elif not in_notebook and not _is_terminal(stream):
            kwargs["mininterval"] = LOG_INTERVAL_S
    return tqdm(iterable, **kwargs)
