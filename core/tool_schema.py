"""The JSON Schema of a tool's arguments, from its signature and docstring.

    doc = parse_docstring(inspect.getdoc(get_weather))    # Docstring(summary, params)
    arguments = ToolArguments(get_weather, name="get_weather", docs=doc.params, context=ToolContext)
    arguments.schema                                      # what the model is shown
    args, kwargs = arguments.bind({"city": "Paris"}, context)  # validated; ready to call

The schema comes from the signature through a pydantic model: types, defaults, ``Literal`` and
``Enum`` choices, nested models, and descriptions from ``Annotated[..., Field(description=)]``
or the docstring (Google ``Args:`` or reST ``:param x:``). A parameter annotated with the
``context`` type is left out of the schema; :meth:`ToolArguments.bind` fills it in.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

__all__ = ["Docstring", "ToolArguments", "parse_docstring"]


# --- the signature as a pydantic model ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    field: str | None  # the model's field; None for the context parameter
    positional_only: bool


class ToolArguments:
    """The arguments of ``fn`` as a model sends them: their JSON Schema (``schema``), the
    signature's ``defaults``, and :meth:`bind` to turn them into a call.

    ``docs`` describes parameters by name (from the docstring); a parameter annotated exactly
    ``context`` is not shown to the model. ``name`` names the tool in errors. Raises
    :class:`TypeError` for ``*args``, ``**kwargs`` or a type that cannot be resolved.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        docs: Mapping[str, str],
        context: type[object],
    ) -> None:
        signature = inspect.signature(fn)
        hints = _parameter_hints(fn, name, signature)
        fields: dict[str, Any] = {}
        params: list[_Param] = []
        self.defaults: dict[str, Any] = {}
        for index, param in enumerate(signature.parameters.values()):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"tool {name}: *args and **kwargs cannot be described to a model")
            positional_only = param.kind is param.POSITIONAL_ONLY
            annotation = hints.get(param.name, Any)
            if annotation is context:
                params.append(_Param(param.name, None, positional_only))
                continue
            if param.name in docs and not _described(annotation, param.default):
                annotation = Annotated[annotation, Field(description=docs[param.name])]
            field = param.name
            if field.startswith("_") or hasattr(BaseModel, field):  # would clash with pydantic
                field = f"arg{index}"
                annotation = Annotated[annotation, Field(alias=param.name)]
            has_default = param.default is not param.empty
            fields[field] = (annotation, param.default if has_default else ...)
            if has_default and not isinstance(param.default, FieldInfo):
                self.defaults[param.name] = param.default
            params.append(_Param(param.name, field, positional_only))
        config = ConfigDict(extra="forbid", protected_namespaces=())
        self._model = create_model(f"{name}_arguments", __config__=config, **fields)
        self._params = tuple(params)
        self.schema = _schema_of(self._model)

    def bind(self, arguments: dict[str, Any], context: object) -> tuple[list[Any], dict[str, Any]]:
        """The model's arguments, validated, as the function's positional and keyword
        arguments, with ``context`` in its place. Raises :class:`pydantic.ValidationError`."""
        values = self._model.model_validate(arguments)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param in self._params:
            value = context if param.field is None else getattr(values, param.field)
            if param.positional_only:
                args.append(value)
            else:
                kwargs[param.name] = value
        return args, kwargs


def _parameter_hints(
    fn: Callable[..., Any], name: str, signature: inspect.Signature
) -> dict[str, Any]:
    """The parameters' annotations, resolved (the return annotation is never needed)."""
    holder = SimpleNamespace(
        __annotations__={
            p.name: p.annotation
            for p in signature.parameters.values()
            if p.annotation is not p.empty
        },
        __globals__=getattr(inspect.unwrap(fn), "__globals__", {}),
    )
    try:
        return get_type_hints(holder, include_extras=True)
    except NameError as exc:
        raise TypeError(f"tool {name}: cannot resolve a parameter's type ({exc})") from None


def _described(annotation: Any, default: Any) -> bool:
    """Whether the parameter already has a description, in its annotation or its default."""
    metadata = get_args(annotation)[1:] if get_origin(annotation) is Annotated else ()
    return any(isinstance(m, FieldInfo) and m.description for m in (*metadata, default))


# --- the model's JSON Schema, tidied for a model to read ------------------------------------------

_VALUES = frozenset({"default", "enum", "const", "examples"})  # values, not schemas
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs"})  # name -> schema


class _Recursive(Exception):
    pass


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema without titles, with ``$ref``s inlined unless a type is recursive."""
    raw = model.model_json_schema()
    defs = raw.pop("$defs", {})
    try:
        schema: dict[str, Any] = _tidy(raw, defs, ())
    except _Recursive:
        schema = _tidy(raw, {}, ())
        schema["$defs"] = _tidy(defs, {}, ())
    order = ("type", "properties", "required", "additionalProperties")
    return {key: schema[key] for key in order if key in schema} | schema


def _tidy(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    """``node`` without titles, with references into ``defs`` inlined (``seen`` are the
    definitions being inlined around it: meeting one again raises :class:`_Recursive`)."""
    if isinstance(node, list):
        return [_tidy(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if defs and isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in seen:
            raise _Recursive
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        return _tidy(defs[name], defs, (*seen, name)) | _tidy(siblings, defs, seen)
    tidy: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _VALUES:
            tidy[key] = value
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            tidy[key] = {name: _tidy(sub, defs, seen) for name, sub in value.items()}
        else:
            tidy[key] = _tidy(value, defs, seen)
    return tidy


# --- docstrings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Docstring:
    """What a docstring tells the model: its first paragraph, and each parameter's description."""

    summary: str
    params: dict[str, str]


_PARAM_SECTIONS = r"Args|Arguments|Parameters|Params|Keyword Args"
_GOOGLE_SECTION = re.compile(rf"^(?:{_PARAM_SECTIONS}):\s*$")
_GOOGLE_ITEM = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_REST_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
_SECTION_START = re.compile(
    rf"^(?:(?:{_PARAM_SECTIONS}|Returns?|Yields?|Raises|Examples?|Notes?):\s*$|:\w)"
)


def parse_docstring(doc: str | None) -> Docstring:
    """The first paragraph, and each parameter's description (Google ``Args:`` or reST)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    paragraph: list[str] = []
    for text in (line.strip() for line in lines):
        if not text or _SECTION_START.match(text):
            break
        paragraph.append(text)
    return Docstring(
        summary=" ".join(paragraph), params=_google_params(lines) | _rest_params(lines)
    )


def _google_params(lines: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    section: int | None = None  # indentation of the "Args:" line while inside that section
    item: int | None = None  # indentation of its items
    name: str | None = None
    for line in lines:
        text, indent = line.strip(), len(line) - len(line.lstrip())
        if _GOOGLE_SECTION.match(text):
            section, item, name = indent, None, None
        elif section is None or not text:
            continue
        elif indent <= section:
            section = None
        elif (item is None or indent == item) and (match := _GOOGLE_ITEM.match(text)):
            item, name = indent, match[1]
            params[name] = match[2].strip()
        elif name is not None:
            params[name] = f"{params[name]} {text}".strip()
    return params


def _rest_params(lines: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    name: str | None = None
    for line in lines:
        text = line.strip()
        if match := _REST_PARAM.match(text):
            name = match[1]
            params[name] = match[2].strip()
        elif not text or text.startswith(":") or not line[:1].isspace():
            name = None
        elif name is not None:
            params[name] = f"{params[name]} {text}".strip()
    return params
