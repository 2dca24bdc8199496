"""A PCA of item image vectors, fitted inside the Beam job (`ImagePcaFn`) and applied per item (`ImagePca`).

It reduces catalog image embeddings (e.g. 64-d or 4096-d) to k dimensions before they go into the item table:
`ImagePca.project(x)` is `components @ (x - mean)`, whose rows are the top-k eigenvectors of the vectors'
population covariance, ordered by decreasing variance, each signed so that its largest-|value| entry is positive
(two fits of the same vectors, in any order, give the same projection up to float rounding).

The combiner's accumulator is the exact sufficient statistics (count, sum of x, sum of x x^T) in float64, not a
sample or an incremental estimate, so that merging partial accumulators is exact on any runner, in any order and
bundling. The price is memory: dim^2 float64 per accumulator, 128 MB at 4096-d (32 KB at 64-d). With fewer than
2 vectors there is nothing to fit: the result truncates to the first k values (mean 0, unit axes), and its
`num_vectors` says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import apache_beam as beam
import numpy as np

Accumulator = tuple[int, np.ndarray, np.ndarray]  # (count, sum [dim], sum of outer products [dim, dim])


@dataclass(frozen=True, eq=False)  # eq=False: a generated __eq__ would compare arrays ambiguously
class ImagePca:
    mean: np.ndarray  # float64 [dim]
    components: np.ndarray  # float64 [k, dim], orthonormal rows, by decreasing variance
    explained_variance_ratio: tuple[float, ...]  # each component's variance / total variance (0s when it is 0)
    num_vectors: int  # how many vectors it was fitted on

    @property
    def dim(self) -> int:
        return self.components.shape[1]

    @property
    def k(self) -> int:
        return self.components.shape[0]

    def project(self, vector: Sequence[float]) -> list[float]:
        if len(vector) != self.dim:
            raise ValueError(f"image vector has length {len(vector)}, the PCA expects {self.dim}")
        return (self.components @ (np.asarray(vector, dtype=np.float64) - self.mean)).tolist()

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "components": self.components.tolist(),
                "explained_variance_ratio": list(self.explained_variance_ratio), "num_vectors": self.num_vectors}

    @classmethod
    def from_dict(cls, d: dict) -> "ImagePca":
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["components"], dtype=np.float64),
                   tuple(float(r) for r in d["explained_variance_ratio"]), int(d["num_vectors"]))


class ImagePcaFn(beam.CombineFn):
    """Fits an `ImagePca` with k components to vectors of length dim (see the module docstring)."""

    def __init__(self, k: int, dim: int):
        if not 0 < k <= dim:
            raise ValueError(f"PCA components k={k} must be between 1 and the vector length dim={dim}")
        self.k, self.dim = k, dim

    def create_accumulator(self) -> Accumulator:
        return 0, np.zeros(self.dim), np.zeros((self.dim, self.dim))

    def add_input(self, accumulator: Accumulator, vectors) -> Accumulator:
        """Adds one vector, or a batch of them ([n, dim]: one BLAS product instead of n outer products, which at
        4096-d is ~100x faster; the job batches with `beam.BatchElements`)."""
        x = np.asarray(vectors, dtype=np.float64)
        x = x[None] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"image vector has length {x.shape[-1]}, the PCA expects {self.dim}")
        count, total, outer = accumulator  # updated in place, as Beam allows for add_input
        total += x.sum(axis=0)
        outer += x.T @ x
        return count + len(x), total, outer

    def merge_accumulators(self, accumulators: Iterable[Accumulator]) -> Accumulator:
        count, total, outer = self.create_accumulator()  # fresh: none of the inputs is modified
        for n, s, o in accumulators:
            count += n
            total += s
            outer += o
        return count, total, outer

    def extract_output(self, accumulator: Accumulator) -> ImagePca:
        count, total, outer = accumulator
        if count < 2:
            return ImagePca(np.zeros(self.dim), np.eye(self.k, self.dim), (0.0,) * self.k, count)
        mean = total / count
        covariance = outer / count - np.outer(mean, mean)
        values, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues, eigenvectors as columns
        values = np.clip(values[::-1], 0.0, None)  # rounding can make the smallest slightly negative
        components = vectors[:, ::-1][:, :self.k].T
        largest = components[np.arange(self.k), np.argmax(np.abs(components), axis=1)]
        components = components * np.where(largest < 0, -1.0, 1.0)[:, None]
        variance = values.sum()
        ratio = tuple(float(v / variance) if variance > 0 else 0.0 for v in values[:self.k])
        return ImagePca(mean, np.ascontiguousarray(components), ratio, count)
