"""The image PCA: what it fits, how its accumulators merge, and a real Beam run of the combiner."""
import json

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that

from marn_tf.pipelines.image_pca import ImagePca, ImagePcaFn

DIM, K = 16, 3


def planted(n=400, seed=0):
    """Vectors around an offset mean in a 3-d subspace of 16-d (stds 5, 3, 2) plus noise of std 0.01; the basis."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(DIM, K)))[0].T  # [K, DIM], orthonormal rows
    latent = rng.normal(size=(n, K)) * [5.0, 3.0, 2.0]
    vectors = 3.0 + latent @ basis + 0.01 * rng.normal(size=(n, DIM))
    return vectors, basis


def accumulate(fn, vectors):
    accumulator = fn.create_accumulator()
    for v in vectors:
        accumulator = fn.add_input(accumulator, list(v))
    return accumulator


def fit(vectors, k=K, dim=DIM) -> ImagePca:
    fn = ImagePcaFn(k, dim)
    return fn.extract_output(fn.merge_accumulators([accumulate(fn, vectors)]))


def assert_same_pca(a: ImagePca, b: ImagePca, tolerance=1e-9):
    assert (a.dim, a.k, a.num_vectors) == (b.dim, b.k, b.num_vectors)
    np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=tolerance)
    np.testing.assert_allclose(a.components, b.components, rtol=0, atol=tolerance)
    np.testing.assert_allclose(a.explained_variance_ratio, b.explained_variance_ratio, rtol=0, atol=tolerance)


def test_the_fit_recovers_a_planted_subspace():
    vectors, basis = planted()
    pca = fit(vectors)
    assert (pca.dim, pca.k, pca.num_vectors) == (DIM, K, len(vectors))
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(K), atol=1e-12)
    # the planted basis lies in the components' span: its projection onto them keeps its length (angles ~ 0)
    np.testing.assert_allclose(np.linalg.svd(basis @ pca.components.T, compute_uv=False), 1.0, atol=1e-4)
    assert sum(pca.explained_variance_ratio) > 0.95
    assert list(pca.explained_variance_ratio) == sorted(pca.explained_variance_ratio, reverse=True)
    variances = np.var((vectors - pca.mean) @ pca.components.T, axis=0)
    assert list(variances) == sorted(variances, reverse=True)


def test_projections_agree_with_numpys_svd_up_to_sign():
    vectors, _ = planted(seed=1)
    centered = vectors - vectors.mean(axis=0)
    reference = centered @ np.linalg.svd(centered, full_matrices=False)[2][:K].T
    pca = fit(vectors)
    projected = np.array([pca.project(list(v)) for v in vectors])
    signs = np.sign(np.sum(projected * reference, axis=0))
    np.testing.assert_allclose(projected, reference * signs, rtol=0, atol=1e-6)
    singular = np.linalg.svd(centered, compute_uv=False)
    np.testing.assert_allclose(pca.explained_variance_ratio, (singular ** 2 / np.sum(singular ** 2))[:K], atol=1e-9)


def test_merged_partial_accumulators_give_the_single_accumulator_fit():
    vectors, _ = planted(seed=2)
    fn = ImagePcaFn(K, DIM)
    parts = [accumulate(fn, vectors[:150]), fn.create_accumulator(), accumulate(fn, vectors[150:])]
    merged = fn.extract_output(fn.merge_accumulators(parts))
    assert_same_pca(merged, fit(vectors))
    # merging does not modify its inputs: merging them again, nested and in another order, gives the same fit
    nested = fn.merge_accumulators([parts[2], fn.merge_accumulators([parts[1], parts[0]])])
    assert_same_pca(fn.extract_output(nested), merged)


def test_another_input_order_gives_the_same_projection():
    vectors, _ = planted(seed=3)
    shuffled = vectors[np.random.default_rng(4).permutation(len(vectors))]
    a, b = fit(vectors), fit(shuffled)
    assert_same_pca(a, b)
    for v in vectors[:20]:
        np.testing.assert_allclose(a.project(list(v)), b.project(list(v)), rtol=0, atol=1e-9)
    assert all(c[np.argmax(np.abs(c))] > 0 for c in a.components)  # the deterministic sign


@pytest.mark.integration
def test_a_beam_run_fits_what_the_in_memory_fit_does():
    vectors, _ = planted(n=200, seed=5)
    expected = fit(vectors)

    def equals_expected(actual):
        assert len(actual) == 1
        assert_same_pca(actual[0], expected)

    with beam.Pipeline() as p:
        pca = p | beam.Create([list(v) for v in vectors]) | beam.CombineGlobally(ImagePcaFn(K, DIM))
        assert_that(pca, equals_expected)


def test_batches_of_vectors_add_as_their_vectors_do():
    """What the job adds: `beam.BatchElements` batches, of any sizes, one vector among them."""
    vectors, _ = planted(n=50, seed=6)
    fn = ImagePcaFn(K, DIM)
    accumulator = fn.create_accumulator()
    for batch in (vectors[:1][0], vectors[1:20], vectors[20:]):
        accumulator = fn.add_input(accumulator, batch)
    assert_same_pca(fn.extract_output(accumulator), fit(vectors))
    with pytest.raises(ValueError, match="length 15, the PCA expects 16"):
        fn.add_input(fn.create_accumulator(), vectors[:3, :15])


@pytest.mark.parametrize("count", [0, 1])
def test_fewer_than_two_vectors_truncate_to_the_first_k_values(count):
    vectors, _ = planted(n=count)
    pca = fit(vectors)
    assert pca.num_vectors == count and pca.explained_variance_ratio == (0.0,) * K
    x = list(np.arange(DIM, dtype=float))
    assert pca.project(x) == x[:K]


def test_identical_vectors_explain_no_variance():
    pca = fit([[1.0] * DIM] * 5)
    assert pca.num_vectors == 5 and pca.explained_variance_ratio == (0.0,) * K
    assert np.allclose(pca.project([1.0] * DIM), 0.0)


def test_a_vector_of_the_wrong_length_is_refused_naming_both_lengths():
    fn = ImagePcaFn(K, DIM)
    with pytest.raises(ValueError, match="length 15, the PCA expects 16"):
        fn.add_input(fn.create_accumulator(), [0.0] * 15)
    with pytest.raises(ValueError, match="length 17, the PCA expects 16"):
        fit(planted()[0]).project([0.0] * 17)


@pytest.mark.parametrize("k", [0, -1, DIM + 1])
def test_k_outside_one_to_dim_is_refused(k):
    with pytest.raises(ValueError, match=f"k={k}.*dim={DIM}"):
        ImagePcaFn(k, DIM)


@pytest.mark.parametrize("k", [1, DIM])
def test_k_at_the_ends_of_one_to_dim_fits_k_components(k):
    """k = 1 and k = dim are accepted and fit that many orthonormal components; at k = dim they explain all the
    variance and the projection keeps every distance (a rotation)."""
    vectors, _ = planted(seed=3)
    pca = fit(vectors, k=k)
    assert pca.k == k and pca.components.shape == (k, DIM) and len(pca.explained_variance_ratio) == k
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(k), atol=1e-9)
    if k == DIM:
        assert sum(pca.explained_variance_ratio) == pytest.approx(1.0)
        projected = np.array([pca.project(list(v)) for v in vectors[:2]])
        assert np.linalg.norm(projected[0] - projected[1]) == pytest.approx(np.linalg.norm(vectors[0] - vectors[1]))


def test_the_dict_round_trips_through_json():
    vectors, _ = planted(seed=6)
    pca = fit(vectors)
    restored = ImagePca.from_dict(json.loads(json.dumps(pca.to_dict())))
    assert_same_pca(restored, pca, tolerance=0)
    assert restored.project(list(vectors[0])) == pca.project(list(vectors[0]))
