"""The relay's in-flight bound (scheduler.dispatch_bound): which queues are full, by RabbitMQ's
count of ready work units, and which routes a take leaves out for them."""

from scheduler.dispatch_bound import DispatchBound, FullQueues

BOUND = DispatchBound(max_in_flight=8)  # full with room for fewer than 2


class Depths:
    """RabbitMQ's answers to passive queue.declare: ready messages per queue."""

    def __init__(self, **ready: int) -> None:
        self.ready = dict(ready)
        self.asked: list[str] = []

    async def queue_depth(self, queue: str) -> tuple[int, int]:
        self.asked.append(queue)
        return self.ready.get(queue, 0), 1


async def test_a_queue_with_little_room_holds_back_every_route_leading_to_it() -> None:
    full = FullQueues(BOUND)
    depths = Depths(main=7, shell=6)
    await full.published(
        depths, [("default noop ", "main"), ("default http ", "main"), ("default shell ", "shell")]
    )
    assert full.holding
    assert sorted(full.excluded_routes()) == ["default http ", "default noop "]
    assert sorted(depths.asked) == ["main", "shell"]  # once per queue, not per route


async def test_a_drained_queue_takes_part_again() -> None:
    full = FullQueues(BOUND)
    depths = Depths(main=8)
    await full.published(depths, [("default noop ", "main")])
    depths.ready["main"] = 7
    assert await full.recheck(depths)  # it drained, still full
    assert full.excluded_routes() == ["default noop "]
    assert not await full.recheck(depths)  # nobody consumed since
    depths.ready["main"] = 6
    assert await full.recheck(depths)
    assert not full.holding and full.excluded_routes() == []


async def test_no_bound_asks_nothing() -> None:
    full = FullQueues(DispatchBound(max_in_flight=0))
    depths = Depths(main=10_000)
    await full.published(depths, [("default noop ", "main")])
    assert not full.holding and depths.asked == []


def test_a_quarter_of_the_bound_is_room_enough() -> None:
    assert DispatchBound(max_in_flight=512).min_room == 128
    assert DispatchBound(max_in_flight=2).min_room == 1


async def test_rabbitmq_is_asked_again_only_once_the_queue_could_be_full() -> None:
    full = FullQueues(BOUND)
    depths = Depths(main=0)
    await full.published(depths, [("default noop ", "main")])
    assert depths.asked == ["main"]  # a queue seen for the first time
    for _ in range(6):  # 0 seen + 6 published since: at most 6 ready, room for 2
        await full.published(depths, [("default noop ", "main")])
    assert depths.asked == ["main"]
    depths.ready["main"] = 7  # nobody consumed
    await full.published(depths, [("default noop ", "main")])  # at most 7: could be full
    assert depths.asked == ["main", "main"]
    assert full.excluded_routes() == ["default noop "]
