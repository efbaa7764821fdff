"""Schedules: values, parsing forms, integer schedules and validation errors."""

from __future__ import annotations

import math

import pytest

from datanas_core.errors import ConfigError, UnknownNameError
from datanas_core.schedules import (
    SCHEDULES,
    Constant,
    Cosine,
    Exponential,
    IntSchedule,
    Linear,
    Step,
    parse_int_schedule,
    parse_schedule,
    parse_temperature,
)


def test_linear_hits_both_ends_and_is_linear_in_between() -> None:
    s = Linear(10, 0.1)
    assert s.value(0, 250) == 10
    assert s.value(249, 250) == pytest.approx(0.1)
    # GDAS: tau_e = tau_max - (tau_max - tau_min) * e / (E - 1)
    assert s.value(100, 250) == pytest.approx(10 - 9.9 * 100 / 249)
    assert s.value(500, 250) == pytest.approx(0.1)  # clamped past the end


def test_endpoint_false_matches_data_formula() -> None:
    s = Linear(5, 1, endpoint=False)
    for e in (0, 37, 149):
        assert s.value(e, 150) == pytest.approx(5 - 4 * e / 150)


def test_exponential_is_geometric() -> None:
    s = Exponential(10, 0.1)
    vals = [s.value(e, 5) for e in range(5)]
    ratios = [b / a for a, b in zip(vals, vals[1:], strict=False)]
    assert vals[0] == pytest.approx(10) and vals[-1] == pytest.approx(0.1)
    assert all(r == pytest.approx(ratios[0]) for r in ratios)


def test_cosine_and_step() -> None:
    c = Cosine(1.0, 0.0)
    assert c.value(0, 11) == pytest.approx(1.0)
    assert c.value(5, 11) == pytest.approx(0.5)
    assert c.value(10, 11) == pytest.approx(0.0, abs=1e-12)
    st = Step([2, 4, 7], [0.3, 0.6])
    assert [st.value(e, 10) for e in (0, 2, 3, 5, 6, 9)] == [2, 2, 4, 4, 7, 7]


def test_single_epoch_run_uses_start() -> None:
    assert Linear(5, 1).value(0, 1) == 5


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (1.0, Constant(1.0)),
        (3, Constant(3.0)),
        ("0.5", Constant(0.5)),
        ("const:2", Constant(2.0)),
        ("linear:5:1", Linear(5.0, 1.0)),
        ("exp:10:0.1", Exponential(10.0, 0.1)),
        ("cosine:1:0.03", Cosine(1.0, 0.03)),
        ({"type": "linear", "start": 5, "end": 1}, Linear(5.0, 1.0)),
        ({"type": "constant", "value": 2}, Constant(2.0)),
    ],
)
def test_parse_forms(spec: object, expected: object) -> None:
    assert parse_schedule(spec) == expected  # type: ignore[arg-type]


def test_to_dict_round_trips() -> None:
    for s in (Constant(2.0), Linear(5, 1), Exponential(10, 0.1), Cosine(1, 0.03), Step([2, 4], [0.5])):
        assert parse_schedule(s.to_dict()) == s


def test_custom_object_with_value_is_accepted() -> None:
    class Half:
        def value(self, epoch: int, total_epochs: int) -> float:
            return 0.5

    h = Half()
    assert parse_schedule(h) is h


def test_pure_function_of_epoch() -> None:
    s = parse_schedule("linear:5:1")
    assert [s.value(3, 10) for _ in range(3)] == [s.value(3, 10)] * 3


@pytest.mark.parametrize("bad", [0, 0.0, -1, "linear:1:0", "linear:-1:1", "cosine:2:0", "step:1,0:0.5"])
def test_temperature_must_stay_positive(bad: object) -> None:
    with pytest.raises(ConfigError, match="> 0"):
        parse_temperature(bad)  # type: ignore[arg-type]


def test_exponential_rejects_non_positive_ends() -> None:
    with pytest.raises(ConfigError, match="start > 0 and end > 0"):
        parse_schedule("exp:1:0")


def test_unknown_kind_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match="linear") as info:
        parse_schedule("linaer:5:1")
    assert "Did you mean 'linear'" in str(info.value)
    assert set(SCHEDULES.names()) >= {"constant", "linear", "exponential", "cosine", "step"}


@pytest.mark.parametrize("bad", ["linear:1", "linear:a:b", [1, 2], None, True, float("nan")])
def test_malformed_specs(bad: object) -> None:
    with pytest.raises(ConfigError):
        parse_schedule(bad)  # type: ignore[arg-type]


def test_mapping_with_typo_option() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        parse_schedule({"type": "linear", "start": 1, "ned": 2})


def test_int_schedule_values_and_validation() -> None:
    m = parse_int_schedule(4)
    assert isinstance(m, IntSchedule) and m.value(0, 10) == 4 and isinstance(m.value(0, 10), int)
    grow = parse_int_schedule("linear:1:7")
    assert [grow.value(e, 7) for e in range(7)] == [1, 2, 3, 4, 5, 6, 7]
    assert parse_int_schedule("step:2,4,7:0.3,0.6").value(9, 10) == 7
    for bad in (0, -2, "linear:4:0", "step:2,0:0.5"):
        with pytest.raises(ConfigError, match=">= 1"):
            parse_int_schedule(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="integer"):
        parse_int_schedule(2.5)


def test_int_schedule_checks_foreign_schedules_at_runtime() -> None:
    class Drop:
        def value(self, epoch: int, total_epochs: int) -> float:
            return 2.0 if epoch < 5 else 0.0

    m = parse_int_schedule(Drop())  # type: ignore[arg-type]
    assert m.value(0, 10) == 2
    with pytest.raises(ConfigError, match="at epoch 5/10"):
        m.value(5, 10)


def test_total_epochs_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="total_epochs"):
        Linear(1, 2).value(0, 0)
    assert not math.isnan(Linear(1, 2).value(0, 1))
