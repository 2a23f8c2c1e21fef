"""The candidate space a machine defines (study/space.py) and the time budget (study/budget.py), for
machines we do not have: a pure function of cores, SMT and GPU."""

from __future__ import annotations

import pytest
from helpers.search_jobs import served_job

from deploybench.study import variants_step
from deploybench.study.budget import (
    BudgetTooSmallError,
    budget_words,
    default_budget_s,
    each_backend_in_turn,
    fit_budget,
    parse_budget,
    spread,
    time_plan,
)
from deploybench.study.plan import VariantSummary, knob_candidates, plan_trials
from deploybench.study.space import (
    MachineShape,
    divisors,
    machine_grid,
    shape_from_environment,
    study_grid,
)
from deploybench.study.spec import KnobGrid, LoadPlan, SearchSpec, StudyConfig
from deploybench.study.variants_step import parity_sizes


def layouts(cores: int) -> set[tuple[int, int]]:
    summary = VariantSummary("openvino-int8", "passed")
    grid = machine_grid(MachineShape(cores=cores))
    return {(c.workers, c.threads) for c in knob_candidates(summary, grid, cores, oversubscribe=False)}


def test_on_two_cores_the_space_is_todays_default_grid() -> None:
    assert machine_grid(MachineShape(cores=2)) == KnobGrid()


@pytest.mark.parametrize("cores", [16, 64])
def test_layouts_are_every_factorization_of_the_cores(cores: int) -> None:
    found = layouts(cores)
    assert {(1, cores), (cores // 4, 4), (cores, 1)} <= found
    assert found == {(w, cores // w) for w in divisors(cores)}
    grid = machine_grid(MachineShape(cores=cores))
    assert grid.max_batch_size == [1, 4, 8, 16] and grid.inter_op_threads == [1, 2]
    assert max(grid.streams) == cores // 2  # the widest worker gives each stream 2 threads


def test_a_gpu_gets_batches_to_64_and_instances_per_gpu_and_its_cpu_backends_the_cpu_grid() -> None:
    shape = MachineShape(cores=4, gpu="NVIDIA L4", gpus=1)
    grid = machine_grid(shape, "cuda")
    assert grid.max_batch_size == [1, 2, 4, 8, 16, 32, 64] and grid.workers == [1, 2, 4]
    assert machine_grid(shape, "cpu").max_batch_size == [1, 4, 8]  # the host's 4 cores
    two = MachineShape(cores=16, gpu="NVIDIA L4", gpus=2)
    assert machine_grid(two, "cuda").workers == [2, 4, 8]  # a multiple of the GPUs


def test_a_study_files_knobs_replace_the_machines_space() -> None:
    big = MachineShape(cores=16)
    assert study_grid(StudyConfig(), big).workers == [1, 2, 4, 8, 16]
    given = StudyConfig.model_validate({"knobs": {"workers": [3]}})
    assert study_grid(given, big).workers == [3]
    assert study_grid(StudyConfig(), None) == KnobGrid()


def test_the_shape_is_read_from_a_recorded_environment() -> None:
    shape = shape_from_environment({"cores": 8, "gpu": "NVIDIA L4, NVIDIA L4", "threads_per_core": 2})
    assert (shape.cores, shape.gpu, shape.gpus, shape.physical_cores) == (8, "NVIDIA L4", 2, 4)
    assert shape_from_environment({"cores": 2}).gpu is None  # an older folder's environment


def test_budgets_parse_and_are_sized_to_the_machine() -> None:
    assert [parse_budget(t) for t in ("10m", "90s", "1h30m", "600", "1.5h")] == [600, 90, 5400, 600, 5400]
    for bad in ("", "ten", "10x", "0m"):
        with pytest.raises(ValueError):
            parse_budget(bad)
    assert [default_budget_s(c) for c in (2, 4, 16, 64)] == [600, 600, 1800, 3000]


def test_the_default_two_core_study_fits_its_budget_unchanged() -> None:
    """8 candidates, as the default study probes on 2 cores: everything probed, nothing cut."""
    plan = fit_budget(SearchSpec(), LoadPlan(), 8, default_budget_s(2), backends=2)
    assert plan.fits and plan.probed == 8 and plan.run_longer == 4 and plan.finalists == 2
    assert 240 < plan.total_s < 480  # the default study's serving took about 6 minutes


def test_a_budget_too_small_says_what_it_needs_and_a_tight_one_probes_fewer() -> None:
    with pytest.raises(BudgetTooSmallError, match=r"needs about .* min \(--budget \d+m\)"):
        fit_budget(SearchSpec(), LoadPlan(), 300, 60, backends=3)
    whole = time_plan(SearchSpec(), LoadPlan(), 300)
    tight = fit_budget(SearchSpec(), LoadPlan(), 300, whole.total_s / 2, backends=3)
    assert tight.fits and 3 <= tight.probed < 300 and tight.space == 300
    assert time_plan(SearchSpec(), LoadPlan(), tight.probed + 1).total_s > whole.total_s / 2


def test_a_cut_keeps_every_backend_and_spreads_over_each_grid() -> None:
    assert spread(8) == [0, 4, 2, 6, 1, 5, 3, 7] and sorted(spread(13)) == list(range(13))
    jobs = [served_job("openvino", batch=b, workers=w) for w in (1, 2) for b in (1, 4, 8, 16)]
    jobs += [served_job("onnxruntime", batch=b) for b in (1, 4)]
    ordered = each_backend_in_turn(jobs)
    assert [j.trial.candidate.backend for j in ordered[:4]] == ["openvino", "onnxruntime"] * 2
    first = [(j.trial.candidate.workers, j.trial.candidate.max_batch_size) for j in ordered[:6]]
    assert (1, 1) in first and (2, 1) in first  # both layouts early, not workers 1's whole grid first


def test_the_plan_sweeps_the_machines_space_and_the_summary_says_what_the_budget_left() -> None:
    summaries = [
        VariantSummary("eager", "passed"),
        VariantSummary("openvino-int8", "passed", precision="int8"),
    ]
    config = StudyConfig(serve_within=None)
    wide = plan_trials(config, summaries, 16, shape=MachineShape(cores=16))
    assert {(t.candidate.workers, t.candidate.threads) for t in wide} >= {(1, 16), (4, 4), (16, 1)}
    two = plan_trials(config, summaries, 2, shape=MachineShape(cores=2))
    assert [t.candidate.key for t in two] == [t.candidate.key for t in plan_trials(config, summaries, 2)]
    counts = {"space": 325, "unmeasured": 151, "budget_s": 3000.0, "planned_s": 5000.0}
    assert "measured 174 of 325 candidates within the 50.0 min budget" in budget_words(counts)
    assert budget_words({**counts, "unmeasured": 0}) == ""


def test_parity_covers_every_cpu_batch_and_the_gpu_grids_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(variants_step, "detect_shape", lambda: MachineShape(cores=2))
    assert parity_sizes(StudyConfig()) == [1, 2, 3, 4]  # as before the machine's space
    gpu = MachineShape(cores=4, gpu="NVIDIA L4", gpus=1)
    monkeypatch.setattr(variants_step, "detect_shape", lambda: gpu)
    assert parity_sizes(StudyConfig()) == [1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64]
