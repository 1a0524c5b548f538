"""Helpers shared by the generators of :mod:`skberdiff.datasets`."""

import numpy as np


def as_generator(random_state):
    """Return a numpy Generator for ``random_state`` without touching global state."""
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    return np.random.default_rng(random_state)
