"""Text sources: what produces the reply, behind one interface.

See `pts.sources.base` for the interface and how to write your own. `load_source` turns the
`PTS_SOURCE` setting (`PTS_GENERATOR`, its older name) into a source.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import cast

from pts.sources.base import (
    DEFAULT_HISTORY_BUDGET,
    GenerationRequest,
    Message,
    Source,
    Turn,
    aiter_source,
    history_budget,
)

__all__ = [
    "BUILTIN_SOURCES",
    "DEFAULT_HISTORY_BUDGET",
    "GenerationRequest",
    "Message",
    "Source",
    "Turn",
    "aiter_source",
    "history_budget",
    "load_source",
]


def _demo(env: Mapping[str, str]) -> Source:
    from pts.sources.demo import DemoSource

    return DemoSource.from_env(env)


def _bedrock(env: Mapping[str, str]) -> Source:
    from pts.sources.bedrock import BedrockSource

    return BedrockSource.from_env(env)


def _openai(env: Mapping[str, str]) -> Source:
    from pts.sources.openai import OpenAISource

    return OpenAISource.from_env(env)


BUILTIN_SOURCES: Mapping[str, Callable[[Mapping[str, str]], Source]] = {
    "demo": _demo,
    "bedrock": _bedrock,
    "openai": _openai,
}
"""Built-in source names and their factories; each reads its own variables from `env`."""


def load_source(name: str, env: Mapping[str, str]) -> Source:
    """Build the source called `name` (the `PTS_SOURCE` setting), configured from `env`.

    - `demo`, `bedrock`, `openai`: the built-in sources (`BUILTIN_SOURCES`);
    - `package.module:attr`: your own. The rule is one line: **`attr` is a factory, called
      with `env`, and returns the source.** So `attr` may be a function `make(env) -> source`
      or a class whose constructor takes `env`. A plain source function is not called with
      `env`; wrap it: `def make(env): return my_source`.

    Raises `ValueError` for an unknown name, a missing module or attribute, and `TypeError`
    when the factory does not return a callable.
    """
    key = name.strip()
    if key.lower() in BUILTIN_SOURCES:
        return BUILTIN_SOURCES[key.lower()](env)
    if ":" not in key:
        raise ValueError(f"unknown source {name!r}: {_CHOICES}")
    module_name, _, attr_path = key.partition(":")
    if not module_name or not attr_path:
        raise ValueError(f"unknown source {name!r}: {_CHOICES}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name + ".").startswith(e.name + "."):
            raise ValueError(f"source {name!r}: no module named {e.name!r}") from e
        raise  # the module exists but one of its own imports is missing: show that
    factory: object = module
    for part in attr_path.split("."):
        try:
            factory = getattr(factory, part)
        except AttributeError:
            raise ValueError(
                f"source {name!r}: module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(factory):
        raise TypeError(f"source {name!r}: {attr_path} is not callable (a factory taking env)")
    source: object = factory(env)
    if not callable(source):
        raise TypeError(
            f"source {name!r}: {attr_path}(env) returned {type(source).__name__}, not a source "
            "(a callable taking a GenerationRequest)"
        )
    return cast(Source, source)


_CHOICES = (
    "choose one of "
    + ", ".join(repr(n) for n in BUILTIN_SOURCES)
    + ", or 'package.module:factory' where factory(env) returns a source"
)
