"""The one cattrs converter: JSON as the server really sends it → typed models.

Built once by ``make_converter``; every server quirk the models meet has a hook
here (docs/server-behaviour.md). The default cattrs primitive hooks coerce
silently (``"false"`` → ``True``, ``None`` → ``"None"``, ``False`` → ``0``), so each
primitive gets a validating hook instead.

The same converter has the other direction too: ``to_dict`` turns models into
JSON-ready data (attribute names, ISO-8601 dates, enum values), the one shape the
library prints (``biotorrents --json``, ``biotorrents watch``) and hands to users.
"""

from __future__ import annotations

import datetime as _dt
import functools
import html
import linecache
import re
from collections.abc import Callable, Mapping
from enum import Enum, StrEnum
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
import cattrs.errors
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .exceptions import ResponseError
from .models import (
    DATE_OR_NONE,
    HIDDEN_IS_NONE,
    UNESCAPE,
    UNESCAPE_OR_NONE,
    Alert,
    Page,
    RecentArtist,
    RecentGroup,
)

__all__ = [
    "default_converter",
    "make_converter",
    "structure",
    "structure_page",
    "to_dict",
]

T = TypeVar("T")

# "1,204": number_format() output (community_stats, ratios ≥ 1000).
_INT_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+|-?\d+")
_FLOAT_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
# MySQL's zero date is how some rows say "never".
_ZERO_DATES = frozenset({"", "0000-00-00 00:00:00"})


def _fail(value: Any, expected: str) -> ValueError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ValueError(f"expected {expected}, got {shown}")


def _to_int(value: Any, _: Any = None) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bool):
        raise _fail(value, "an integer")
    if isinstance(value, int):
        return value
    # PHP casts sizes to float; json_encode prints 1.0e+17 for large ones.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value.strip().replace(",", ""))
    raise _fail(value, "an integer")


def _to_float(value: Any, _: Any = None) -> float:
    if type(value) is float and value - value == 0:  # finite
        return value
    if type(value) is int:  # ratio -1, sizes: PHP prints whole floats bare
        return float(value)  # finite, or OverflowError like float() below
    if isinstance(value, bool):
        raise _fail(value, "a number")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
        result = float(value.strip().replace(",", ""))
    else:
        raise _fail(value, "a number")
    if result != result or result in (float("inf"), float("-inf")):
        raise _fail(value, "a finite number")
    return result


def _to_bool(value: Any, _: Any = None) -> bool:
    if value is True or value is False:
        return value
    # ENUM('0','1') columns and PHP ints stand in for booleans in places.
    if value in (0, 1, "0", "1") and not isinstance(value, float):
        return bool(int(value))
    raise _fail(value, "a boolean")


def _to_str(value: Any, _: Any = None) -> str:
    if type(value) is str or isinstance(value, str):
        return value
    raise _fail(value, "a string")


def _unescape(value: Any) -> str:
    if type(value) is not str:
        value = _to_str(value)
    return html.unescape(value) if "&" in value else value


def _to_datetime(value: Any, _: Any = None) -> _dt.datetime:
    text = _to_str(value).strip()
    try:
        # MySQL DATETIME "YYYY-MM-DD HH:MM:SS"; fromisoformat is ~20x faster
        # than strptime and reads that format exactly.
        return _dt.datetime.fromisoformat(text)
    except ValueError:
        raise _fail(value, "a 'YYYY-MM-DD HH:MM:SS' date") from None


def _marker_of(tp: Any) -> object | None:
    if get_origin(tp) is Annotated:
        for meta in tp.__metadata__:
            if meta in (UNESCAPE, UNESCAPE_OR_NONE, HIDDEN_IS_NONE, DATE_OR_NONE):
                return meta  # type: ignore[no-any-return]
    return None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Converter(cattrs.Converter):
    """A cattrs converter that knows its slower twin for explaining failures.

    The happy path runs without cattrs' detailed validation (faster); when a
    body does not fit, the same value is structured again by ``explainer``, whose
    errors carry the path of the offending field.
    """

    __slots__ = ("explainer", "hooks")

    explainer: cattrs.Converter | None
    hooks: dict[Any, Callable[[Any, Any], Any]]
    """Each target type's hook, found once (``structure`` skips the dispatch)."""


def make_converter(*, strict: bool = False, detailed: bool = False) -> Converter:
    """Build the converter that turns API JSON into models.

    Args:
        strict: Reject keys a model does not know. The library runs non-strict
            (unknown keys are ignored); the test suite runs strict on every
            recorded response so that a model silently dropping data fails a test.
        detailed: Build only the detailed-validation flavour (no explainer).

    Returns:
        A ready converter. Register nothing on it afterwards: hook factories cache
        the hooks of field types when a class is first structured.
    """
    conv = Converter(detailed_validation=detailed)
    conv.hooks = {}
    conv.explainer = None if detailed else make_converter(strict=strict, detailed=True)

    conv.register_structure_hook(int, _to_int)
    conv.register_structure_hook(float, _to_float)
    conv.register_structure_hook(bool, _to_bool)
    conv.register_structure_hook(str, _to_str)
    conv.register_structure_hook(_dt.datetime, _to_datetime)

    def is_optional(tp: Any) -> bool:
        args = get_args(tp)
        return (
            get_origin(tp) in (Union, UnionType)
            and len(args) == 2
            and type(None) in args
        )

    def optional_factory(tp: Any) -> Callable[[Any, Any], Any]:
        # cattrs' own Optional hook looks the inner type's hook up on every
        # value; resolved once here, per field type (the same result).
        inner = next(arg for arg in get_args(tp) if arg is not type(None))
        inner_hook = conv.get_structure_hook(inner)

        def optional(value: Any, _: Any) -> Any:
            return None if value is None else inner_hook(value, inner)

        return optional

    # Registered first: every hook below (the markers, the special tuples) wins.
    conv.register_structure_hook_factory(is_optional, optional_factory)

    def marked_factory(tp: Any) -> Callable[[Any, Any], Any]:
        # Resolved once per field type when a model's hook is generated.
        marker = _marker_of(tp)
        if marker is UNESCAPE:
            return lambda value, _: _unescape(value)
        if marker is UNESCAPE_OR_NONE:
            return lambda value, _: (
                None if value is None or value == "" else _unescape(value)
            )
        if marker is DATE_OR_NONE:

            def date_or_none(value: Any, _: Any) -> _dt.datetime | None:
                if value is None or (isinstance(value, str) and value in _ZERO_DATES):
                    return None
                return _to_datetime(value)

            return date_or_none
        # HIDDEN_IS_NONE: community_stats starts every key as false (hidden).
        inner = next(arg for arg in get_args(get_args(tp)[0]) if arg is not type(None))
        inner_hook = conv.get_structure_hook(inner)

        def hidden_is_none(value: Any, _: Any) -> Any:
            if value is None or value is False:
                return None
            return inner_hook(value, inner)

        return hidden_is_none

    conv.register_structure_hook_factory(
        lambda tp: _marker_of(tp) is not None, marked_factory
    )

    def is_homogeneous_tuple(tp: Any) -> bool:
        args = get_args(tp)
        return get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis

    def tuple_factory(tp: Any) -> Callable[[Any, Any], tuple[Any, ...]]:
        item_type = get_args(tp)[0]
        item_hook = conv.get_structure_hook(item_type)

        def structure_tuple(value: Any, _: Any) -> tuple[Any, ...]:
            # A dict or a string would otherwise be iterated key by key.
            if not isinstance(value, list):
                raise _fail(value, "a list")
            return tuple(item_hook(item, item_type) for item in value)

        return structure_tuple

    conv.register_structure_hook_factory(is_homogeneous_tuple, tuple_factory)

    def recent_artists(value: Any, _: Any) -> tuple[RecentArtist, ...]:
        # user_recents: a list holding one list of artists; R1a-era code sends [null].
        if not isinstance(value, list):
            raise _fail(value, "a list of artist lists")
        hook = conv.get_structure_hook(RecentArtist)
        out: list[RecentArtist] = []
        for inner in value:
            if inner is None:
                continue
            if not isinstance(inner, list):
                raise _fail(inner, "a list of artists")
            out.extend(hook(artist, RecentArtist) for artist in inner)
        return tuple(out)

    artists_type = tuple[RecentArtist, ...]
    conv.register_structure_hook_func(lambda tp: tp == artists_type, recent_artists)

    recents_type = tuple[RecentGroup, ...] | None

    def recent_groups(value: Any, _: Any) -> tuple[RecentGroup, ...] | None:
        # The paranoia path sends the string "hidden" instead of a list.
        if value is None or value == "hidden":
            return None
        return conv.structure(value, tuple[RecentGroup, ...])

    conv.register_structure_hook_func(lambda tp: tp == recents_type, recent_groups)

    def alerts(value: Any, _: Any) -> dict[str, Alert]:
        # json_die() turns an empty payload into [].
        if value == []:
            return {}
        if not isinstance(value, dict):
            raise _fail(value, "an object of notices")
        # The server files each notice under its kind; the model carries it.
        return {
            _to_str(k): attrs.evolve(conv.structure(v, Alert), kind=_to_str(k))
            for k, v in value.items()
        }

    alerts_type = dict[str, Alert]
    conv.register_structure_hook_func(lambda tp: tp == alerts_type, alerts)

    def attrs_factory(cls: type[Any]) -> Callable[[Any, Any], Any]:
        renames = {
            field.name: override(rename=field.metadata.get("key", _camel(field.name)))
            for field in attrs.fields(cls)
        }
        if not detailed and cls is not RecentGroup:
            fast = _inline_model_hook(cls, conv, strict=strict)
            if fast is not None:
                return fast
        inner = make_dict_structure_fn(
            cls,
            conv,
            _cattrs_forbid_extra_keys=strict,
            **renames,  # type: ignore[arg-type]
        )

        def structure_model(value: Any, tp: Any) -> Any:
            if type(value) is not dict:
                value = _as_object(value, cls)
            return inner(value, tp)

        if cls is RecentGroup:
            return lambda value, tp: structure_model(
                _recent_group_keys(value) if isinstance(value, dict) else value, tp
            )
        return structure_model

    conv.register_structure_hook_factory(attrs.has, attrs_factory)
    _register_unstructure(conv)
    return conv


def _as_object(value: Any, cls: type[Any]) -> dict[str, Any]:
    if value == []:
        return {}  # json_die() empty payload where an object belongs
    if not isinstance(value, dict):
        raise _fail(value, f"an object for {cls.__name__}")
    return value


def _extra_keys(value: dict[str, Any], cls: type[Any], known: frozenset[str]) -> None:
    extra = set(value) - known
    raise cattrs.errors.ForbiddenExtraKeysError(
        f"Extra fields in constructor for {cls.__name__}: {', '.join(sorted(extra))}",
        cls,
        extra,
    )


def _inline_model_hook(
    cls: type[Any], conv: cattrs.Converter, *, strict: bool
) -> Callable[[Any, Any], Any] | None:
    """A model's structure hook with the common cases of its fields inline.

    cattrs' generated hook calls a field's hook for every field: about a third
    of the client's own time on a small answer went to those calls. Here a
    value that already has its field's type (an int for ``int``, a string
    without ``&`` for text) is taken as is, in the model's own code; any other
    value goes to the very hook cattrs would call, so the result and every
    failure are the same (a failure is then explained by cattrs' detailed
    twin). Generic models and factory defaults are left to cattrs (``None``).
    """
    if getattr(cls, "__parameters__", ()):
        return None
    attrs.resolve_types(cls)
    names: dict[str, Any] = {"__cl": cls, "__as_object": _as_object}
    args: list[str] = []
    keywords: list[str] = []
    keys = []
    for n, field in enumerate(attrs.fields(cls)):
        if not field.init or isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            return None
        key = field.metadata.get("key", _camel(field.name))
        keys.append(key)
        tp = field.type
        hook = conv.get_structure_hook(tp)
        names[f"__h{n}"] = hook
        names[f"__t{n}"] = tp
        get = f"(_v := o[{key!r}])"
        call = f"__h{n}(_v, __t{n})"
        marker = _marker_of(tp)
        if tp is int and hook is _to_int:
            value = f"(_v if type{get} is int else {call})"
        elif tp is str and hook is _to_str:
            value = f"(_v if type{get} is str else {call})"
        elif tp is float and hook is _to_float:
            # A whole float arrives as an int (PHP prints 1.0 as 1): the hook's
            # first two cases, inline.
            value = (
                f"(float(_v) if type{get} is int else "
                f"_v if type(_v) is float and _v - _v == 0 else {call})"
            )
        elif tp is bool and hook is _to_bool:
            value = f"(_v if {get} is True or _v is False else {call})"
        elif tp == (str | None) and conv.get_structure_hook(str) is _to_str:
            value = f"(_v if {get} is None or type(_v) is str else {call})"
        elif marker is UNESCAPE:
            value = f'(_v if type{get} is str and "&" not in _v else {call})'
        elif marker is UNESCAPE_OR_NONE:
            value = f'(_v if type{get} is str and _v and "&" not in _v else {call})'
        else:
            value = f"__h{n}(o[{key!r}], __t{n})"
        if field.default is not attrs.NOTHING:
            names[f"__d{n}"] = field.default
            value = f"({value} if {key!r} in o else __d{n})"
        if field.kw_only:
            keywords.append(f"{field.alias}={value}")
        else:
            args.append(value)
    names["__known"] = frozenset(keys)
    names["__extra"] = _extra_keys
    lines = [
        "def structure(o, _):",
        "    if type(o) is not dict:",
        "        o = __as_object(o, __cl)",
    ]
    if strict:
        lines += [
            "    if not __known.issuperset(o):",
            "        __extra(o, __cl, __known)",
        ]
    lines.append("    return __cl(" + ", ".join(args + keywords) + ")")
    source = "\n".join(lines)
    filename = f"<biotorrents structure {cls.__qualname__}>"
    # In linecache, so that a traceback through the hook shows its line.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), names)  # noqa: S102 - our own source
    structure_fn: Callable[[Any, Any], Any] = names["structure"]
    return structure_fn


def _register_unstructure(conv: cattrs.Converter) -> None:
    """The model → JSON-ready data side, used by ``to_dict``."""
    # Naive server time, as the server wrote it: "2021-01-16T08:41:09".
    conv.register_unstructure_hook(_dt.datetime, lambda value: value.isoformat())
    # AlertKind and friends are StrEnums: str comes before Enum in their MRO, so
    # a hook on Enum alone would lose to cattrs' str passthrough.
    for enum_type in (Enum, StrEnum):
        conv.register_unstructure_hook(enum_type, lambda value: value.value)

    def attrs_unstructure(cls: type[Any]) -> Callable[[Any], dict[str, Any]]:
        # Fields kept out of repr (authkey, passkey) are secrets: a bot that
        # posts to_dict(index) to a chat must not publish them.
        secrets = {
            field.name: override(omit=True)
            for field in attrs.fields(cls)
            if not field.repr
        }
        return make_dict_unstructure_fn(cls, conv, **secrets)  # type: ignore[arg-type]

    conv.register_unstructure_hook_factory(attrs.has, attrs_unstructure)


@functools.cache
def default_converter() -> Converter:
    """Return the library's converter, built on first use and shared by clients."""
    return make_converter()


def to_dict(obj: Any) -> Any:
    """Turn a model, a ``Page``, or a dict, tuple or list of them into JSON-ready data.

    The shape is the models', not the server's: keys are the attribute names
    (``conv_id``, ``bb_body``, ``class_name``; not ``convId``, ``bbbody``,
    ``class``), nested models become nested dicts, tuples become lists, dates
    become ISO-8601 strings in server time without an offset
    (``"2021-01-16T08:41:09"``), enums their values and ``None`` stays ``None``
    (JSON ``null``). A ``Page`` becomes ``{"items": [...], "current_page": ...,
    "pages": ..., "attempts": ...}``; an ``Alert`` keeps its ``kind``. Secret
    fields (``Index.authkey``, ``Index.passkey``, ``UserPersonal.passkey``, the
    fields hidden from ``repr``) are left out. ``biotorrents --json`` and
    ``biotorrents watch`` print exactly this.

    Args:
        obj: What a client call returned (or part of it).

    Returns:
        Plain dicts, lists, strings, numbers, booleans and ``None``, ready for
        ``json.dumps``.

    Example:
        ``json.dumps(to_dict(await client.inbox.conversations()))``
    """
    return default_converter().unstructure(obj)


def _recent_group_keys(value: dict[str, Any]) -> dict[str, Any]:
    """Map the R1a-era ``user_recents`` keys onto the R1 ones.

    From May 2021 the query selects ``id``/``title``/``picture`` but the code still
    reads ``ID``, so items carry the lowercase keys plus a bogus ``"ID": 0``.
    """
    if "title" not in value and "id" not in value:
        return value
    mapped = {k: v for k, v in value.items() if k not in ("id", "title", "picture")}
    if not mapped.get("ID"):
        mapped["ID"] = value.get("id")
    if "title" in value:
        mapped["Name"] = value["title"]
    if "picture" in value:
        mapped["WikiImage"] = value["picture"]
    return mapped


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc)[:5])
    return str(exc) or type(exc).__name__


_STRUCTURE_ERRORS = (
    cattrs.errors.CattrsError,
    cattrs.BaseValidationError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    RecursionError,
    OverflowError,
)


def structure(conv: cattrs.Converter, raw: Any, cl: type[T] | Any, action: str) -> T:
    """Structure ``raw`` into ``cl``; any failure becomes ``ResponseError``."""
    try:
        if type(conv) is Converter:
            hook = conv.hooks.get(cl)
            if hook is None:
                hook = conv.hooks[cl] = conv.get_structure_hook(cl)
            return hook(raw, cl)  # type: ignore[no-any-return]
        return conv.structure(raw, cl)  # type: ignore[no-any-return]
    except _STRUCTURE_ERRORS as exc:
        cause: BaseException = exc
        explainer = getattr(conv, "explainer", None)
        if explainer is not None:
            try:
                explainer.structure(raw, cl)
            except _STRUCTURE_ERRORS as detailed:
                cause = detailed
        raise ResponseError(
            f"{action}: unexpected response shape: {_describe(cause)}",
            status=200,
            action=action,
        ) from cause


def structure_page(
    conv: cattrs.Converter,
    raw: Any,
    item_type: type[T],
    *,
    items_key: str,
    page_key: str,
    action: str,
    attempts: int = 1,
) -> Page[T]:
    """Structure one page of a listing into ``Page``.

    The list key differs per action (``messages``, ``results``, ``threads``) and so
    does the page key (``notifications`` says ``currentPages``).
    """
    if not isinstance(raw, Mapping):
        raise ResponseError(
            f"{action}: expected a page object, got {type(raw).__name__}",
            status=200,
            action=action,
        )
    fields = {"current_page": raw.get(page_key), "pages": raw.get("pages")}
    numbers: _PageNumbers = structure(conv, fields, _PageNumbers, action)
    items: tuple[T, ...] = structure(
        conv,
        raw.get(items_key),
        tuple[item_type, ...],  # type: ignore[valid-type]
        action,
    )
    return Page(
        items=items,
        current_page=numbers.current_page,
        pages=numbers.pages,
        attempts=attempts,
    )


@attrs.frozen
class _PageNumbers:
    current_page: int = attrs.field(metadata={"key": "current_page"})
    pages: int = attrs.field(metadata={"key": "pages"})
