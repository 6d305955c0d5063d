"""Part buffers reused only when nothing else holds them."""

from __future__ import annotations

from tailup.body import BufferPool, PartBody


def test_a_buffer_given_back_is_taken_again_for_the_same_size() -> None:
    pool = BufferPool(max_idle_bytes=1 << 20)
    body = pool.take(1000)
    assert isinstance(body, PartBody) and len(body) == 1000
    assert pool.give(body)
    assert pool.take(1000) is body
    assert pool.take(1000) is not body  # taken once only


def test_a_buffer_still_viewed_is_not_reused() -> None:
    """A pending socket write holds a memoryview of the body: its bytes must not change."""
    pool = BufferPool(max_idle_bytes=1 << 20)
    body = pool.take(1000)
    view = memoryview(body)[10:20]
    assert not pool.give(body)
    view.release()
    del view
    assert pool.give(body)


def test_a_buffer_held_elsewhere_is_not_reused() -> None:
    pool = BufferPool(max_idle_bytes=1 << 20)
    body = pool.take(1000)
    elsewhere = [body]
    assert not pool.give(body)
    elsewhere.clear()
    assert pool.give(body)


def test_idle_buffers_are_capped() -> None:
    pool = BufferPool(max_idle_bytes=2500)
    bodies = [pool.take(1000) for _ in range(3)]
    kept = [pool.give(bodies.pop()) for _ in range(3)]
    assert kept == [True, True, False]


def test_a_size_the_pool_cannot_serve_frees_the_idle_buffers_first() -> None:
    """Idle buffers plus new ones would grow past the byte budget: memory is freed first."""
    pool = BufferPool(max_idle_bytes=1 << 20)
    body = pool.take(1000)
    assert pool.give(body)
    del body
    pool.take(777)  # a tail
    assert pool.take(1000) is not None and pool._idle_bytes == 0
