import asyncio
from collections.abc import Sequence

import pytest

from taskmesh.batching import GroupCommitter


async def test_concurrent_submissions_share_flushes() -> None:
    batches: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        await asyncio.sleep(0.01)
        return [i * 10 for i in items]

    committer: GroupCommitter[int, int] = GroupCommitter(flush, max_batch=100, max_in_flight=1)
    results = await asyncio.gather(*(committer.submit(i) for i in range(50)))
    assert results == [i * 10 for i in range(50)]
    assert sorted(i for batch in batches for i in batch) == list(range(50))
    assert len(batches) < 50  # batched, not one flush per item


async def test_lone_submission_is_flushed_without_waiting_for_company() -> None:
    async def flush(items: Sequence[str]) -> list[str]:
        return [s.upper() for s in items]

    committer: GroupCommitter[str, str] = GroupCommitter(flush)
    assert await asyncio.wait_for(committer.submit("a"), timeout=1) == "A"


async def test_max_batch_is_respected() -> None:
    sizes: list[int] = []

    async def flush(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0)
        return list(items)

    committer: GroupCommitter[int, int] = GroupCommitter(flush, max_batch=7, max_in_flight=1)
    await asyncio.gather(*(committer.submit(i) for i in range(30)))
    assert max(sizes) <= 7
    assert sum(sizes) == 30


async def test_an_exception_result_fails_only_its_item() -> None:
    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        return [ValueError("odd") if i % 2 else i for i in items]

    committer: GroupCommitter[int, int] = GroupCommitter(flush)
    results = await asyncio.gather(*(committer.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], ValueError) and isinstance(results[3], ValueError)


async def test_a_failed_flush_fails_its_whole_batch_and_later_ones_still_work() -> None:
    calls = 0

    async def flush(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database down")
        return list(items)

    committer: GroupCommitter[int, int] = GroupCommitter(flush)
    with pytest.raises(ConnectionError):
        await committer.submit(1)
    assert await committer.submit(2) == 2
