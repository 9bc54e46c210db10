import pytest

import phenossl
from phenossl._progress import Progress, run


def _work(n):
    total = 0
    for i in range(n):
        total += i
        yield Progress(i + 1, n, f"item {i}")
    return total


def test_run_returns_generator_result_and_reports_every_event():
    events = []
    assert run(_work(4), events.append) == 6
    assert [e.done for e in events] == [1, 2, 3, 4]
    assert events[-1].fraction == 1.0


def test_progress_fraction_handles_zero_total():
    assert Progress(0, 0).fraction == 1.0
    assert Progress(1, 4).fraction == 0.25


def test_unknown_public_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        phenossl.nope


def test_version_is_a_string():
    assert isinstance(phenossl.__version__, str)


def test_every_lazy_name_is_exported():
    assert set(phenossl._LAZY) <= set(phenossl.__all__)


def test_stage_maps_a_subtask_onto_its_slice_and_returns_its_result():
    from phenossl._progress import stage

    def outer():
        first = yield from stage(_work(2), 0, 2, "a", scale=10)
        second = yield from stage(_work(4), 1, 2, "b", scale=10)
        return first, second

    events = []
    assert run(outer(), events.append) == (1, 6)
    assert all(e.total == 20 for e in events)
    dones = [e.done for e in events]
    assert dones == sorted(dones)
    assert dones[0] == 0 and dones[-1] == 20
    assert any(e.message.startswith("b: item") for e in events)


def test_drives_derives_the_plain_function_with_the_full_signature():
    import inspect
    import typing

    from phenossl._progress import ProgressCallback, drives

    def iter_total(n: int, *, start: int = 0) -> typing.Generator[Progress, None, int]:
        return (yield from _work(n)) + start

    @drives(iter_total)
    def total(*, progress: ProgressCallback | None = None) -> int:
        """The total; see iter_total."""

    events = []
    assert total(4, start=1, progress=events.append) == 7
    assert len(events) == 4
    assert total(3) == 3
    assert total.__name__ == "total" and total.__doc__ == "The total; see iter_total."
    assert list(inspect.signature(total).parameters) == ["n", "start", "progress"]
    assert typing.get_type_hints(total)["return"] is int
    with pytest.raises(TypeError, match="exactly"):
        drives(iter_total)(lambda x: x)


def test_library_plain_functions_show_their_generators_parameters():
    import inspect

    from phenossl.embedding import embed, iter_embed

    params = list(inspect.signature(embed).parameters)
    assert params == [*inspect.signature(iter_embed).parameters, "progress"]


def test_stages_count_sub_tasks_as_stage_does():
    from phenossl._progress import Stages

    stages = Stages(2)
    events = []
    assert run(stages.run(_work(2), "first"), events.append) == 1
    assert events[0] == Progress(0, 2000, "first")
    assert events[-1] == Progress(1000, 2000, "first")
    assert stages.done("second") == Progress(2000, 2000, "second")
