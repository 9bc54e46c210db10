"""Queues (wrap-around with any batch size), NN support sets, indexed memory and k-means."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from phenossl.ssl.memory import (
    FeatureQueue,
    IndexedMemory,
    NNMemoryBank,
    nearest_neighbours,
    spherical_kmeans,
)


def _items(start: int, stop: int, dim: int = 3) -> torch.Tensor:
    """Rows whose every entry is the item's number, so positions are easy to read."""
    return torch.arange(start, stop, dtype=torch.float32).unsqueeze(1).repeat(1, dim)


def _ids(rows: torch.Tensor) -> list[int]:
    return rows[:, 0].long().tolist()


def test_queue_wraps_around_with_batches_that_do_not_divide_its_size():
    queue = FeatureQueue(10, 3, init="zeros")
    queue.enqueue(_items(0, 4))
    assert int(queue.ptr) == 4
    assert int(queue.num_filled) == 4
    assert _ids(queue.ordered()) == [0, 1, 2, 3]
    queue.enqueue(_items(4, 8))
    queue.enqueue(_items(8, 12))  # 8, 9 fill the end; 10, 11 overwrite positions 0, 1
    assert _ids(queue.queue) == [10, 11, 2, 3, 4, 5, 6, 7, 8, 9]
    assert int(queue.ptr) == 2
    assert int(queue.num_filled) == 10
    assert _ids(queue.ordered()) == list(range(2, 12))
    queue.enqueue(_items(12, 15))  # a smaller last batch
    assert _ids(queue.queue) == [10, 11, 12, 13, 14, 5, 6, 7, 8, 9]
    assert int(queue.ptr) == 5
    assert _ids(queue.ordered()) == list(range(5, 15))


def test_queue_batch_larger_than_the_queue_keeps_the_newest():
    queue = FeatureQueue(10, 3, init="zeros")
    queue.enqueue(_items(0, 3))
    queue.enqueue(_items(3, 16))  # 13 items into a queue of 10
    assert _ids(queue.ordered()) == list(range(6, 16))
    assert int(queue.ptr) == (3 + 13) % 10


def test_queue_holds_the_last_items_of_any_stream():
    generator = torch.Generator().manual_seed(0)
    queue = FeatureQueue(10, 3, init="zeros")
    seen = 0
    for _ in range(30):
        batch = int(torch.randint(1, 14, (1,), generator=generator))
        queue.enqueue(_items(seen, seen + batch))
        seen += batch
        expected = list(range(max(0, seen - 10), seen))
        assert _ids(queue.ordered()) == expected


def test_queue_paper_case_1024_with_batches_of_32_and_128():
    for batch in (32, 128):
        queue = FeatureQueue(1024, 2)
        n = 0
        for size in [batch] * 40 + [batch // 2]:  # a smaller last batch
            queue.enqueue(_items(n, n + size, dim=2))
            n += size
        assert _ids(queue.ordered()) == list(range(n - 1024, n))


def test_queue_values_is_a_copy_and_random_init_is_normalised():
    torch.manual_seed(0)
    queue = FeatureQueue(6, 4)
    torch.testing.assert_close(queue.queue.norm(dim=1), torch.ones(6))
    snapshot = queue.values()
    queue.enqueue(torch.ones(2, 4))
    assert not torch.equal(snapshot, queue.queue)
    snapshot.zero_()
    assert queue.queue.abs().sum() > 0


def test_queue_state_dict_round_trip_continues_identically():
    a = FeatureQueue(10, 3, init="zeros")
    a.enqueue(_items(0, 7))
    b = FeatureQueue(10, 3)
    b.load_state_dict(a.state_dict())
    for q in (a, b):
        q.enqueue(_items(7, 11))
    assert torch.equal(a.queue, b.queue)
    assert int(a.ptr) == int(b.ptr) == 1
    assert _ids(b.ordered()) == list(range(1, 11))


def test_queue_rejects_bad_input():
    with pytest.raises(ValueError, match="size and dim"):
        FeatureQueue(0, 3)
    with pytest.raises(ValueError, match="init"):
        FeatureQueue(4, 3, init="ones")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        FeatureQueue(4, 3).enqueue(torch.zeros(2, 5))


def test_nearest_neighbour_uses_cosine_similarity():
    bank = torch.tensor([[5.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    query = torch.tensor([[1.0, 0.1], [0.2, 1.0], [-3.0, 0.5]])
    indices, neighbours = nearest_neighbours(query, bank)
    # [1, 0.1] is closer to [1, 1] in Euclidean distance but to [5, 0] in angle
    assert indices.tolist() == [0, 1, 2]
    assert torch.equal(neighbours, bank[[0, 1, 2]])


def test_nn_memory_bank_retrieves_stored_neighbours():
    bank = NNMemoryBank(4, 2, init="zeros")
    stored = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]), dim=1)
    bank.enqueue(stored)
    query = torch.tensor([[0.9, 0.2], [-0.1, -2.0]], requires_grad=True)
    indices, neighbours = bank.nearest(query)
    assert indices.tolist() == [0, 3]
    assert torch.equal(neighbours, stored[[0, 3]])
    assert not neighbours.requires_grad
    with pytest.raises(ValueError, match="query"):
        nearest_neighbours(torch.zeros(2, 3), torch.zeros(4, 2))


def test_indexed_memory_writes_at_dataset_indices():
    memory = IndexedMemory(num_views=2, size=6, dim=3)
    a, b = torch.ones(2, 3), 2 * torch.ones(2, 3)
    memory.update(torch.tensor([4, 1]), [a, b])
    assert memory.filled.tolist() == [False, True, False, False, True, False]
    assert torch.equal(memory.embeddings[0, [4, 1]], a)
    assert torch.equal(memory.embeddings[1, [4, 1]], b)
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        memory.update(torch.tensor([6, 0]), [a, b])
    with pytest.raises(ValueError, match="2 views"):
        memory.update(torch.tensor([0, 1]), [a])


def _three_clusters(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.eye(3)
    labels = torch.arange(3).repeat_interleave(20)
    x = centres[labels] + 0.1 * torch.randn(60, 3, generator=generator)
    return F.normalize(x, dim=1), labels


def test_spherical_kmeans_recovers_separated_clusters():
    x, labels = _three_clusters()
    centroids, assignments = spherical_kmeans(
        x, 3, iterations=10, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(centroids.norm(dim=1), torch.ones(3))
    # the partition equals the truth up to a permutation of cluster ids
    pairs = {(int(a), int(t)) for a, t in zip(assignments, labels)}
    assert len(pairs) == 3
    assert len({a for a, _ in pairs}) == 3
    # each centroid points at its cluster's direction
    for cluster in range(3):
        members = x[assignments == cluster]
        torch.testing.assert_close(centroids[cluster], F.normalize(members.mean(0), dim=0))


def test_spherical_kmeans_is_reproducible_and_validates_k():
    x, _ = _three_clusters(seed=3)
    runs = [spherical_kmeans(x, 5, 3, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0])
    assert torch.equal(runs[0][1], runs[1][1])
    with pytest.raises(ValueError, match="k must lie"):
        spherical_kmeans(x, 61)
