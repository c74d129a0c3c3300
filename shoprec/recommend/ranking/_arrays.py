"""An append-only numpy array with amortised growth (events and items arrive one by one)."""

from __future__ import annotations

from typing import Any

import numpy as np


class Growing:
    def __init__(self, dtype: Any, capacity: int = 1024) -> None:
        self._data = np.zeros(capacity, dtype=dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, value: Any) -> None:
        if self._n == len(self._data):
            bigger = np.zeros(2 * len(self._data), dtype=self._data.dtype)
            bigger[: self._n] = self._data
            self._data = bigger
        self._data[self._n] = value
        self._n += 1

    def set(self, i: int, value: Any) -> None:
        self._data[i] = value

    def view(self) -> np.ndarray:
        """The filled part (a view: valid until the next append)."""
        return self._data[: self._n]
