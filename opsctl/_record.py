"""Frozen value types that load without the ``dataclasses`` module.

``opsctl deploy-gate`` runs on every deploy and must start in under 1.5x the time of
``opsctl --version`` (issue 4). ``dataclasses`` stands in the way twice: importing it imports
``inspect`` (with ``ast``, ``dis`` and ``tokenize``), and every class it decorates compiles its
``__init__``, ``__repr__``, ``__eq__``, ``__hash__`` and ``__setattr__`` with ``exec``. On the
gate's thirteen types that was about a third of its run. A :class:`Record` subclass declares
its fields the same way, costs microseconds to create, and mypy reads it as a frozen dataclass
(PEP 681's ``dataclass_transform``).

What a Record keeps of a frozen dataclass: positional or keyword construction, defaults and
``field(default_factory=...)``, ``repr=False`` and ``compare=False`` per field, equality and
hashing over the compared fields of the same class, and ``FrozenInstanceError`` on assignment.
What it leaves out: ``__post_init__``, ordering, ``kw_only``, ``InitVar``, ``match``. ``replace``,
``fields`` and ``asdict`` (shallow) are the module functions of the same names.

The types the gate loads are Records; the import-weight test of the gate keeps it so.
Elsewhere ``dataclasses`` is the default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, dataclass_transform

__all__ = ["FrozenInstanceError", "Record", "asdict", "field", "fields", "replace"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a Record (records are immutable)."""


class _Field:
    """One field: its name, how its default is made, and whether repr and == see it."""

    __slots__ = ("compare", "default", "factory", "name", "repr")

    def __init__(
        self,
        name: str,
        default: Any = MISSING,
        factory: Callable[[], Any] | None = None,
        repr: bool = True,
        compare: bool = True,
    ):
        self.name = name
        self.default = default
        self.factory = factory
        self.repr = repr
        self.compare = compare


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | None = None,
    repr: bool = True,
    compare: bool = True,
) -> Any:
    """A field's options, as ``dataclasses.field`` takes them (a subset)."""
    if default is not MISSING and default_factory is not None:
        raise ValueError("field() takes a default or a default_factory, not both")
    return _Field("", default, default_factory, repr, compare)


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return isinstance(text, str) and text.startswith(("ClassVar", "typing.ClassVar"))


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class Record:
    """Base of a frozen value type: annotate fields in the class body, as for a dataclass."""

    __slots__ = ()
    __record_fields__: ClassVar[tuple[_Field, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found = {f.name: f for f in cls.__record_fields__}  # a base Record's fields first
        # not inspect.get_annotations: importing inspect is what a Record avoids
        own = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
        for name, annotation in own.items():
            if _is_classvar(annotation):
                continue
            value = cls.__dict__.get(name, MISSING)
            if isinstance(value, _Field):
                spec = _Field(name, value.default, value.factory, value.repr, value.compare)
                if value.default is MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, value.default)
            else:
                spec = _Field(name, value)
            found[name] = spec
        optional = False
        for spec in found.values():
            required = spec.default is MISSING and spec.factory is None
            if required and optional:
                raise TypeError(
                    f"{cls.__qualname__}: field {spec.name!r} without a default follows one "
                    "with a default"
                )
            optional = optional or not required
        cls.__record_fields__ = tuple(found.values())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        specs = self.__record_fields__
        if len(args) > len(specs):
            raise TypeError(
                f"{type(self).__qualname__}() takes {len(specs)} positional arguments "
                f"but {len(args)} were given"
            )
        values = self.__dict__
        for spec, value in zip(specs, args, strict=False):
            if spec.name in kwargs:
                raise TypeError(
                    f"{type(self).__qualname__}() got multiple values for argument {spec.name!r}"
                )
            values[spec.name] = value
        for spec in specs[len(args) :]:
            name = spec.name
            if name in kwargs:
                values[name] = kwargs.pop(name)
            elif spec.factory is not None:
                values[name] = spec.factory()
            elif spec.default is not MISSING:
                values[name] = spec.default
            else:
                raise TypeError(f"{type(self).__qualname__}() missing required argument: {name!r}")
        if kwargs:
            unknown = next(iter(kwargs))
            raise TypeError(
                f"{type(self).__qualname__}() got an unexpected keyword argument {unknown!r}"
            )

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={self.__dict__[f.name]!r}" for f in self.__record_fields__ if f.repr
        )
        return f"{type(self).__qualname__}({shown})"

    def _compared(self) -> tuple[Any, ...]:
        values = self.__dict__
        return tuple(values[f.name] for f in self.__record_fields__ if f.compare)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())


R = TypeVar("R", bound=Record)  # bound to the class, not "Record": a string costs 2 ms


def fields(record: Record | type[Record]) -> tuple[str, ...]:
    """The field names of a Record class or instance, in declaration order."""
    return tuple(f.name for f in record.__record_fields__)


def asdict(record: Record) -> dict[str, Any]:
    """The fields as a dict (shallow: a nested Record stays a Record)."""
    return {f.name: record.__dict__[f.name] for f in record.__record_fields__}


def replace(record: R, /, **changes: Any) -> R:
    """A copy of ``record`` with some fields changed (TypeError for a name that is no field)."""
    values = asdict(record)
    values.update(changes)
    return type(record)(**values)
