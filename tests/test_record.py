"""Record: the frozen value type of the gate's path behaves as a frozen dataclass would."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest

from opsctl._record import FrozenInstanceError, Record, asdict, field, fields, replace


class Point(Record):
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)
    secret: str = field(default="", repr=False)
    note: str = field(default="", compare=False)
    kind: ClassVar[str] = "point"


class Point3(Point):
    z: int = 0


@dataclasses.dataclass(frozen=True)
class DataPoint:
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)
    secret: str = dataclasses.field(default="", repr=False)
    note: str = dataclasses.field(default="", compare=False)


def test_construction_positional_keyword_and_defaults() -> None:
    assert Point(1).y == 0
    assert Point(1, 2).y == 2
    assert Point(x=1, y=3).y == 3
    assert Point(1, tags=["a"]).tags == ["a"]
    assert Point3(1, 2, z=5).z == 5
    assert fields(Point3) == ("x", "y", "tags", "secret", "note", "z")


def test_default_factory_makes_a_new_value_each_time() -> None:
    first, second = Point(1), Point(2)
    first.tags.append("a")
    assert second.tags == []
    assert first.tags is not second.tags


def test_a_classvar_is_not_a_field() -> None:
    assert "kind" not in fields(Point)
    assert Point.kind == "point"
    assert Point(1).kind == "point"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing required argument: 'x'"),
        ((1, 2, [], "", "", 9), {}, "takes 5 positional arguments but 6 were given"),
        ((1,), {"x": 2}, "got multiple values for argument 'x'"),
        ((1,), {"colour": "red"}, "unexpected keyword argument 'colour'"),
    ],
)
def test_construction_errors_match_a_dataclass(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        Point(*args, **kwargs)
    with pytest.raises(TypeError):  # a dataclass refuses the same call
        DataPoint(*args, **kwargs)


def test_a_required_field_after_a_default_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match="field 'b' without a default follows one with a default"):

        class Bad(Record):
            a: int = 1
            b: int  # type: ignore[misc]


def test_field_takes_a_default_or_a_factory_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        field(default=1, default_factory=int)


def test_fields_cannot_be_assigned_or_deleted() -> None:
    point = Point(1)
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'x'"):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'other'"):
        point.other = 2
    with pytest.raises(FrozenInstanceError, match="cannot delete field 'x'"):
        del point.x
    with pytest.raises(AttributeError):  # as dataclasses.FrozenInstanceError is
        point.y = 1  # type: ignore[misc]
    assert point.x == 1


def test_repr_equality_and_hash_follow_the_field_options() -> None:
    point = Point(1, 2, secret="s3cret", note="n")
    assert repr(point) == "Point(x=1, y=2, tags=[], note='n')"
    assert repr(point).removeprefix("Point") == repr(
        DataPoint(1, 2, secret="s3cret", note="n")
    ).removeprefix("DataPoint")
    assert "s3cret" not in repr(point)
    assert point == Point(1, 2, secret="s3cret", note="other")  # note is not compared
    assert point != Point(1, 2, secret="else")
    assert Point(1) != Point3(1)  # another class, even a subclass, is never equal
    assert Point(1) != (1, 0)
    assert hash(Point(1, 2, tags=())) == hash(Point(1, 2, tags=(), note="x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unhashable"):
        hash(Point(1))  # a list field, as a dataclass would refuse it too
    assert {Point3(1, tags=()): "a"}[Point3(1, tags=())] == "a"  # type: ignore[arg-type]


def test_replace_fields_and_asdict() -> None:
    point = Point3(1, 2, note="n", z=3)
    moved = replace(point, y=5)
    assert type(moved) is Point3
    assert (moved.x, moved.y, moved.note, moved.z) == (1, 5, "n", 3)
    assert point.y == 2
    with pytest.raises(TypeError, match="unexpected keyword argument 'w'"):
        replace(point, w=1)
    assert fields(point) == fields(Point3)
    assert asdict(point) == {"x": 1, "y": 2, "tags": [], "secret": "", "note": "n", "z": 3}


def test_asdict_is_shallow() -> None:
    class Outer(Record):
        inner: Point

    inner = Point(1)
    assert asdict(Outer(inner))["inner"] is inner
