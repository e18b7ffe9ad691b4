"""Read `template.yaml`: tables, functions and their environment, as deployed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]


def default_path() -> Path:
    """`template.yaml` of the project in the working directory, else of this checkout."""
    here = Path.cwd() / "template.yaml"
    return here if here.exists() else ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (`!Ref X` → `{"Ref": "X"}`)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(
            None, None, f"unexpected !{suffix}", node.start_mark
        )
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@dataclass(frozen=True, slots=True)
class Function:
    logical_id: str
    code_uri: Path
    handler: str
    environment: Mapping[str, Any]
    events: Mapping[str, Any]
    memory_size: int = 128
    timeout: int = 3
    """Seconds; Lambda's defaults for both when neither the function nor Globals say."""


class Template:
    """The parts of the SAM template the local stack needs, with Globals applied."""

    def __init__(self, path: Path | None = None, parameters: Mapping[str, str] | None = None):
        self.path = path = path or default_path()
        self.body: dict[str, Any] = yaml.load(path.read_text(), Loader=_CfnLoader)
        self.resources: dict[str, Any] = self.body.get("Resources", {})
        self.parameters = dict(parameters or {})
        """Parameter values this stack is deployed with (the rest keep their defaults), as
        `sam deploy --parameter-overrides` gives them: `AuthMode=jwt`, say."""

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """The resources of a type that exist with these parameters (their `Condition`)."""
        return {
            name: resource.get("Properties", {})
            for name, resource in self.resources.items()
            if resource.get("Type") == resource_type
            and ("Condition" not in resource or self.condition(resource["Condition"]))
        }

    def parameter_defaults(self) -> dict[str, str]:
        """Every parameter's value as deployed here: the one given, else its default."""
        defaults = {
            name: str(spec["Default"])
            for name, spec in self.body.get("Parameters", {}).items()
            if "Default" in spec
        }
        return {**defaults, **self.parameters}

    def condition(self, name: str) -> bool:
        """A condition of the template, evaluated with the parameters' values."""
        return self._truth(self.body.get("Conditions", {})[name])

    def _truth(self, expression: Any) -> bool:
        if not isinstance(expression, dict) or len(expression) != 1:
            raise ValueError(f"not a condition: {expression!r}")
        ((function, args),) = expression.items()
        if function in ("Condition", "Fn::Condition"):  # `!Condition X` in YAML
            return self.condition(args)
        if function == "Fn::Not":
            return not self._truth(args[0])
        if function == "Fn::And":
            return all(self._truth(arg) for arg in args)
        if function == "Fn::Or":
            return any(self._truth(arg) for arg in args)
        if function == "Fn::Equals":
            left, right = (self.resolve(arg, self.parameter_defaults()) for arg in args)
            return left == right
        raise ValueError(f"the local stack cannot evaluate {function}")

    def choose(self, value: Any) -> Any:
        """`value` with an `Fn::If` taken (None for `AWS::NoValue`), else as it is."""
        while isinstance(value, dict) and set(value) == {"Fn::If"}:
            name, then, otherwise = value["Fn::If"]
            value = then if self.condition(name) else otherwise
        if value == {"Ref": "AWS::NoValue"}:
            return None
        return value

    def tables(self) -> dict[str, dict[str, Any]]:
        return self.of_type("AWS::DynamoDB::Table")

    def functions(self) -> dict[str, Function]:
        defaults = self.body.get("Globals", {}).get("Function", {})
        shared_env = defaults.get("Environment", {}).get("Variables", {})
        functions = {}
        for name, props in self.of_type("AWS::Serverless::Function").items():
            env = {**shared_env, **props.get("Environment", {}).get("Variables", {})}
            functions[name] = Function(
                logical_id=name,
                code_uri=self.path.parent / props.get("CodeUri", defaults.get("CodeUri", ".")),
                handler=props.get("Handler", defaults.get("Handler", "")),
                environment=env,
                events=props.get("Events", {}),
                memory_size=self._number(props.get("MemorySize", defaults.get("MemorySize", 128))),
                timeout=self._number(props.get("Timeout", defaults.get("Timeout", 3))),
            )
        return functions

    def _number(self, value: Any) -> int:
        """A numeric property, which may be a `Ref` to a parameter (its default, locally)."""
        resolved = self.resolve(value, self.parameter_defaults())
        if resolved is None:
            raise ValueError(f"cannot resolve {value!r} locally")
        return int(resolved)

    def resolve(self, value: Any, refs: Mapping[str, str]) -> str | None:
        """A value with `Ref`s resolved from `refs` (and `Fn::If` taken); None if it needs
        anything else."""
        value = self.choose(value)
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and set(value) == {"Ref"}:
            return refs.get(value["Ref"])
        return None
