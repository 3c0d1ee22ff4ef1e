"""Small statistics helpers, used by the README's demo: Wellspring completes the last line."""

import math


def mean(values):
    """Return the arithmetic mean of a non-empty list of numbers."""
    return sum(values) / len(values)


def variance(values):
    """Return the population variance of a non-empty list of numbers."""
    center = mean(values)
    return sum((value - center) ** 2 for value in values) / len(values)


def standard_deviation(values):
    """Return the population standard deviation of a non-empty list of numbers."""
    return math.
