import io

import numpy as np
import pytest

from skberdiff import MaskedBernoulliDiffusionDetector
from skberdiff._progress import LOG_INTERVAL_S, progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_log_files_get_few_refreshes(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    log = io.StringIO()
    bar = progress(range(5), verbose=1, file=log)
    assert bar.mininterval == LOG_INTERVAL_S
    assert list(bar) == list(range(5))


def test_terminals_keep_tqdm_default(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    bar = progress(range(5), verbose=1, file=_Terminal())
    assert bar.mininterval == pytest.approx(0.1)
    bar.close()


def test_explicit_and_environment_settings_win(monkeypatch):
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    assert progress(range(2), verbose=1, file=io.StringIO(), mininterval=2).mininterval == 2
    monkeypatch.setenv("TQDM_MININTERVAL", "5")
    assert progress(range(2), verbose=1, file=io.StringIO()).mininterval == 5


@pytest.mark.parametrize("verbose, disabled", [(0, True), (False, True), (1, False), (2, False)])
def test_verbose_switches_the_bar(verbose, disabled):
    bar = progress(range(2), verbose=verbose, file=io.StringIO())
    assert bar.disable is disabled
    bar.close()


def test_explicit_disable_overrides_verbose():
    bar = progress(range(2), verbose=1, disable=True, file=io.StringIO())
    assert bar.disable
    bar.close()


def test_detector_is_silent_with_verbose_0(capsys):
    X = np.random.default_rng(0).random((6, 1, 32, 32)).astype(np.float32)
    det = MaskedBernoulliDiffusionDetector(
        preset="tiny", autoencoder_iterations=2, diffusion_iterations=2, diffusion_steps=20,
        noise_level=3, device="cpu", random_state=0, verbose=0).fit(X)
    det.score_samples(X[:2])
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_notebook_bars_are_recognised_through_their_bases():
    from tqdm import std

    from skberdiff._progress import _in_notebook

    class NotebookBar(std.tqdm):
        pass

    NotebookBar.__module__ = "tqdm.notebook"

    class AutoBar(NotebookBar):  # what tqdm.auto builds in a notebook
        pass

    AutoBar.__module__ = "tqdm.auto"
    assert _in_notebook(AutoBar)
    assert not _in_notebook(std.tqdm)
