"""A bounded, strict YAML reader for configs and study specs.

Two things plain ``yaml.safe_load`` lets through are refused here:
- duplicate keys in a mapping (PyYAML keeps the last one silently), named with their line;
- documents whose alias expansion explodes ("billion laughs": a few lines of anchors and
  aliases that expand to 10^9 nodes). The composed node graph is measured as it would be
  expanded, counting each alias as a full copy, before anything is constructed; the message
  gives the count and never echoes the input.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from sparseflow.errors import ConfigError

#: Most nodes a config document may expand to. Real configs and study specs have a few
#: hundred; a million is far above any of them and still quick to validate.
MAX_NODES = 1_000_000


def expanded_size(root: Node, limit: int = MAX_NODES) -> int:
    """Nodes of ``root`` with every alias expanded; ConfigError above ``limit`` or on a
    recursive alias. Linear in the distinct nodes (sizes of shared nodes are memoized)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            line = node.start_mark.line + 1 if node.start_mark else "?"
            raise ConfigError(f"YAML alias at line {line} refers to a node containing itself; "
                              "a config must be a finite tree: remove the recursive alias")
        active.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        if total > limit:
            raise ConfigError(f"YAML document expands to more than {limit:,} nodes through its "
                              "aliases (an alias bomb?); a config needs far fewer: write the "
                              "values out or use fewer nested aliases")
        sizes[key] = total
        return total

    return size(root)


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and documents whose aliases explode."""

    def get_single_node(self) -> Node | None:  # noqa: D102 - PyYAML hook
        node = super().get_single_node()
        if node is not None:
            expanded_size(node)
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:  # noqa: D102
        # Checked before the base class flattens merge keys ("<<"): a key written next to a
        # merge legitimately overrides the merged one; the same key written twice does not.
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise ConfigError(f"duplicate YAML key {key!r} at line {line} (first at line "
                                  f"{first}); keep only one of them")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str) -> Any:
    """Parse one YAML document with :class:`BoundedLoader` (YAMLError on syntax errors)."""
    return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 - a SafeLoader subclass
