"""Policy YAML: safe loading with the policy rules (floats kept as their text, no aliases,
no duplicate keys, a size limit), into JSON-shaped data for :class:`protocol.policy.Policy`."""

from __future__ import annotations

from typing import Any

import yaml

from protocol.errors import PolicyError

#: Largest policy document accepted, in bytes of YAML or JSON text.
MAX_POLICY_BYTES = 262_144

__all__ = ["MAX_POLICY_BYTES", "load_policy_yaml"]


class _PolicyLoader(yaml.SafeLoader):
    """Safe YAML with the policy rules: floats as their text, no aliases, no duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        # Aliases let a small document expand into a huge one; policies never need them.
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]  # types-PyYAML leaves Parser.peek_event unannotated
            raise PolicyError(
                f"YAML aliases (*name) are not allowed in policies (line {event.start_mark.line + 1})"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # PyYAML silently keeps the last of two equal keys; in a safety policy that hides edits.
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise PolicyError(
                    f"duplicate key {key!r} in policy YAML (line {key_node.start_mark.line + 1})"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _scalar_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


# The exact text keeps "0.60" as written: converting through binary floats would make the
# digest depend on float formatting, and 0.1 would silently become 0.1000000000000000055...
_PolicyLoader.add_constructor("tag:yaml.org,2002:float", _scalar_text)
_PolicyLoader.add_constructor("tag:yaml.org,2002:timestamp", _scalar_text)


def load_policy_yaml(text: str) -> Any:
    """Parse policy YAML text into plain JSON-shaped data, raising :class:`PolicyError`."""
    if not isinstance(text, str):
        raise PolicyError("policy YAML must be passed as text (str)")
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy YAML is larger than {MAX_POLICY_BYTES} bytes")
    try:
        data = yaml.load(text, Loader=_PolicyLoader)  # noqa: S506 (a SafeLoader subclass)
    except PolicyError:
        raise
    except yaml.YAMLError as e:
        raise PolicyError(f"policy YAML is malformed: {e}") from e
    if data is None:
        raise PolicyError("policy YAML is empty")
    return data
