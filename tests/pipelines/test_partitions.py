import numpy as np

from pipelines.partitions import fit_partitions, partition_count


def test_partition_count_is_about_the_square_root_of_the_rows() -> None:
    assert partition_count(1_000_000) == 1024
    assert partition_count(100) == 16
    assert partition_count(10_000_000) == 4096


def test_separated_clusters_each_get_a_partition_of_their_own() -> None:
    """Eight tight clusters on unit-norm directions, eight partitions: k-means finds them."""
    rng = np.random.default_rng(3)
    centers = np.linalg.qr(rng.normal(size=(32, 8)))[0].T  # 8 orthonormal directions
    truth = rng.integers(0, 8, 4_000)
    vectors = centers[truth] + 0.05 * rng.normal(size=(4_000, 32))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    partitions = fit_partitions(vectors, np.random.default_rng(0), partitions=8, projected_dim=8)
    homes = set()
    for cluster in range(8):
        found = np.bincount(partitions.partition_of[truth == cluster], minlength=8)
        assert found.max() >= 0.98 * found.sum()  # the cluster (nearly) all in one partition
        homes.add(int(found.argmax()))
    assert len(homes) == 8
    # the projection keeps the clusters' span: orthonormal columns, little of a vector lost
    projection = partitions.projection
    np.testing.assert_allclose(projection.T @ projection, np.eye(8), atol=1e-5)
    kept = np.linalg.norm(vectors @ projection, axis=1)
    assert kept.mean() > 0.95 and kept.min() > 0.9


def test_the_same_seed_gives_the_same_partitions() -> None:
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(3_000, 16)).astype(np.float32)
    first = fit_partitions(vectors, np.random.default_rng(9))
    again = fit_partitions(vectors, np.random.default_rng(9))
    np.testing.assert_array_equal(first.partition_of, again.partition_of)
    np.testing.assert_array_equal(first.centroids, again.centroids)
