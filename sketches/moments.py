"""Mergeable first and second moments (count, mean, sum of squared deviations).

Batches are reduced with numpy (two-pass, numerically stable) and combined with
the parallel update of Chan, Golub & LeVeque, so ``merge`` is associative and
commutative up to floating-point rounding.

>>> import numpy as np
>>> m = Moments.from_array(np.array([1.0, 2.0, 3.0])).merge(Moments.from_array(np.array([4.0])))
>>> m.count, m.mean, m.variance
(4, 2.5, 1.6666666666666667)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Moments"]


@dataclass(frozen=True, slots=True)
class Moments:
    """Count, mean and M2 (sum of squared deviations from the mean)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def from_array(cls, values: npt.NDArray[np.float64], overwrite: bool = False) -> Moments:
        """Moments of a 1-d array of finite floats (vectorized).

        ``overwrite=True`` computes the deviations in ``values`` itself, saving a copy of the batch.
        The sum of squares is a plain numpy reduction, not ``np.dot``: BLAS threads cost
        milliseconds per call on a loaded machine, which dominated 200-column batches.
        """
        n = int(values.size)
        if n == 0:
            return cls()
        mean = float(values.mean())
        dev = np.subtract(values, mean, out=values if overwrite else None)
        return cls(n, mean, float(np.square(dev, out=dev).sum()))

    def merge(self, other: Moments) -> Moments:
        """Combine two partial moments (Chan et al. parallel formula)."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / n
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / n
        return Moments(n, mean, m2)

    @property
    def variance(self) -> float | None:
        """Unbiased sample variance (ddof=1); ``0.0`` for one value, ``None`` when empty."""
        if self.count == 0:
            return None
        if self.count == 1:
            return 0.0
        return max(self.m2, 0.0) / (self.count - 1)

    @property
    def stddev(self) -> float | None:
        """Square root of :attr:`variance`."""
        v = self.variance
        return None if v is None else math.sqrt(v)
