"""Reading a profile's YAML text strictly: what you see is what the stimulator gets.

PyYAML's default (YAML 1.1) reading quietly turns text into other values: ``yes``/``on``
become ``True`` (and then 1 in an integer field), ``25:00`` becomes 1500 (base 60), ``0x1e``
becomes 30, and a key written twice keeps the later value. Anchors and aliases let a 3 kB
file expand into gigabytes. None of that belongs in a file that sets a stimulation current.

:func:`parse_profile_text` therefore reads with a YAML 1.2-like *core* schema, narrowed:

* ``true``/``false`` (any case style of the 1.2 core schema) are the only booleans;
  ``yes``, ``no``, ``on``, ``off``, ``y``, ``n`` stay strings;
* integers are decimal only (``[-+]?[0-9]+``); no ``0x``, ``0o``, ``_`` or base 60;
* floats are decimal with an optional exponent, ``.inf`` and ``.nan`` (refused later by the
  profile's finite-number rule); ``~``, ``null`` and an empty value are null;
* anything else (``25:00``, ``2024-01-01``, ``=``, ``<<``) is a string;
* duplicate keys, anchors (``&name``), aliases (``*name``) and explicit tags (``!!int``)
  are refused, as are files larger than :data:`MAX_PROFILE_BYTES`, nesting deeper than
  :data:`MAX_DEPTH` and more than :data:`MAX_NODES` values — so memory and time stay
  bounded by the file's size.

Every refusal is :class:`fescontrol.core.profile.ProfileError` with one line naming the file,
the line and what is allowed.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

MAX_PROFILE_BYTES = 256 * 1024
"""A profile is a few kB; anything larger is not a profile."""
MAX_DEPTH = 16
"""A profile nests three levels (``trigger.heel.debounce_ms``)."""
MAX_NODES = 20_000
"""Scalars, lists and mappings in one file."""


class YamlRefused(Exception):
    """A profile text was refused; ``line`` is 1-based (None when it has no place)."""

    def __init__(self, message: str, line: int | None = None):
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line else message)


def _line(node_or_event: Any) -> int | None:
    mark = getattr(node_or_event, "start_mark", None)
    return None if mark is None else mark.line + 1


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with the core resolvers above and the refusals of this module."""

    yaml_implicit_resolvers: dict = {}

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise YamlRefused(f"alias *{event.anchor} refused: a profile writes every value out "
                              "(anchors and aliases are not allowed)", _line(event))
        if getattr(event, "anchor", None) is not None:
            raise YamlRefused(f"anchor &{event.anchor} refused: a profile writes every value out "
                              "(anchors and aliases are not allowed)", _line(event))
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise YamlRefused(f"tag {tag} refused: write plain values (tags are not allowed)",
                              _line(event))
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise YamlRefused(f"more than {MAX_NODES} values: not a profile", _line(event))
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlRefused(f"nested deeper than {MAX_DEPTH} levels: not a profile "
                                  "(a profile nests 3 levels)", _line(event))
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int | None] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    raise YamlRefused("a key must be a plain name, not a list or mapping",
                                      _line(key_node)) from None
                if key in seen:
                    raise YamlRefused(f"duplicate key {key!r} (first at line {seen[key]}): "
                                      "keep one; a later value would silently win", _line(key_node))
                seen[key] = _line(key_node)
        return super().construct_mapping(node, deep=deep)


def _resolver(tag: str, pattern: str, first: str | list[str]) -> None:
    _StrictLoader.add_implicit_resolver(tag, re.compile(pattern, re.X), list(first))


_resolver("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_resolver("tag:yaml.org,2002:int", r"^[-+]?[0-9]+$", "-+0123456789")
_resolver("tag:yaml.org,2002:float",
          r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
              |[-+]?\.(?:inf|Inf|INF)
              |\.(?:nan|NaN|NAN))$""", "-+0123456789.")
_resolver("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""])


def parse_profile_text(text: str) -> Any:
    """Parse one YAML document strictly (see the module docstring).

    Raises :class:`YamlRefused` for a refused construct and ``yaml.YAMLError`` for text
    that is not YAML.
    """
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def decode_profile_bytes(raw: bytes) -> str:
    """UTF-8 text of a profile file (a leading byte-order mark is dropped).

    Raises :class:`YamlRefused` when the file is too large or not UTF-8.
    """
    if len(raw) > MAX_PROFILE_BYTES:
        raise YamlRefused(f"{len(raw)} bytes: too large for a profile (allowed ≤ {MAX_PROFILE_BYTES} bytes)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise YamlRefused(f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
                          "save the file as UTF-8", line) from None


def read_profile_file(path: Path) -> str:
    """The text of a profile file, size-checked before it is read whole.

    Raises OSError when it cannot be read, :class:`YamlRefused` when it is too large or not
    UTF-8.
    """
    with open(path, "rb") as f:
        raw = f.read(MAX_PROFILE_BYTES + 1)
    if len(raw) > MAX_PROFILE_BYTES:
        raise YamlRefused(f"larger than {MAX_PROFILE_BYTES} bytes: too large for a profile")
    return decode_profile_bytes(raw)
