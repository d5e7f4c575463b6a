"""GSSM graph specs: parsing, validation (docs/spec.md section 1) and topological order.

A graph is written in configs as a mapping from node name to its fields, e.g.

    graph = {"Z1": dict(state_dim=4, alpha=0.05, parents=("X",)),
             "X": dict(state_dim=32, alpha=0.05, parents=("Z1",), observed=True)}

`parse_graph` turns it into a validated `Graph` whose hidden nodes are in a topological order of the
hidden DAG, or raises `GraphError` naming the node and the field.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

MODES = ("default", "slow", "dead", "context")
KERNEL_TYPES = ("product", "fullrank")
FIELDS = ("name", "state_dim", "alpha", "parents", "mode", "kernel_type", "observed")
MAX_TABLE_ENTRIES = 2**27


class GraphError(ValueError):
    """A graph spec that breaks a rule of docs/spec.md section 1."""


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    name: str
    state_dim: int
    alpha: float
    parents: tuple[str, ...] = ()
    mode: str = "default"
    kernel_type: str = "product"
    observed: bool = False


@dataclasses.dataclass(frozen=True)
class Graph:
    """A validated GSSM: hidden nodes in topological order, then the observed node."""

    hidden: tuple[NodeSpec, ...]
    observed: NodeSpec

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return (*self.hidden, self.observed)

    @property
    def vocab_size(self) -> int:
        return self.observed.state_dim

    @property
    def hidden_dims(self) -> tuple[int, ...]:
        return tuple(n.state_dim for n in self.hidden)

    @property
    def joint_size(self) -> int:
        return math.prod(self.hidden_dims)

    @property
    def has_context(self) -> bool:
        return any(n.mode == "context" for n in self.nodes)

    @property
    def x_feeds_hidden(self) -> bool:
        """Whether some hidden node reads the previous token."""
        return any(self.observed.name in n.parents for n in self.hidden)

    def index(self, name: str) -> int:
        """Position of a hidden node in `hidden` (the joint-state axis order)."""
        for i, n in enumerate(self.hidden):
            if n.name == name:
                return i
        raise KeyError(name)

    def input_dims(self, node: NodeSpec) -> tuple[int, ...]:
        """Sizes of a node's kernel inputs: own previous value (hidden only), then parents in order."""
        by_name = {n.name: n for n in self.nodes}
        own = () if node.observed else (node.state_dim,)
        return own + tuple(by_name[p].state_dim for p in node.parents)

    def blanked(self, keep_context: bool = False, **fields: Any) -> Graph:
        """The graph with `fields` set on every node (but `context` ones when `keep_context`): the
        compile-cache key of functions that read the drawn tables instead of those fields, so
        graphs that differ only there (an alpha search) share compiled functions."""

        def blank(n: NodeSpec) -> NodeSpec:
            return n if keep_context and n.mode == "context" else dataclasses.replace(n, **fields)

        return Graph(tuple(blank(n) for n in self.hidden), blank(self.observed))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The graph as plain config data (round-trips through `parse_graph`)."""
        out = {}
        for n in self.nodes:
            d = dataclasses.asdict(n)
            d.pop("name")
            d["parents"] = list(d["parents"])
            out[n.name] = d
        return out


def _err(name: str, field: str, msg: str, value: Any) -> GraphError:
    return GraphError(f"graph node {name!r}, field {field!r}: {msg}, got {value!r}")


def _as_items(spec: Any) -> list[tuple[str, Mapping[str, Any]]]:
    if hasattr(spec, "to_dict"):
        spec = spec.to_dict()
    if isinstance(spec, Mapping):
        items = []
        for name, fields in spec.items():
            if hasattr(fields, "to_dict"):
                fields = fields.to_dict()
            if not isinstance(fields, Mapping):
                raise GraphError(
                    f"graph node {name!r}: expected a mapping of fields, got {fields!r}"
                )
            if "name" in fields and fields["name"] != name:
                raise _err(
                    str(name), "name", "differs from the key it is listed under", fields["name"]
                )
            items.append((name, fields))
        return items
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        items = []
        for i, fields in enumerate(spec):
            if hasattr(fields, "to_dict"):
                fields = fields.to_dict()
            if not isinstance(fields, Mapping) or "name" not in fields:
                raise GraphError(
                    f"graph node #{i}: expected a mapping with a 'name', got {fields!r}"
                )
            items.append((fields["name"], fields))
        return items
    raise GraphError(f"graph: expected a mapping of node name to fields, got {spec!r}")


def _node(name: Any, fields: Mapping[str, Any]) -> NodeSpec:
    if not isinstance(name, str) or not name:
        raise GraphError(f"graph node {name!r}, field 'name': must be a non-empty string")
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise _err(
            name, unknown[0], f"unknown field (known: {', '.join(FIELDS)})", fields[unknown[0]]
        )
    for required in ("state_dim", "alpha"):
        if required not in fields:
            raise GraphError(f"graph node {name!r}, field {required!r}: missing")
    dim = fields["state_dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
        raise _err(name, "state_dim", "must be an integer >= 2", dim)
    alpha = fields["alpha"]
    ok = isinstance(alpha, int | float) and not isinstance(alpha, bool)
    if not ok or not math.isfinite(alpha) or alpha <= 0:
        raise _err(name, "alpha", "must be a finite number > 0", alpha)
    parents = fields.get("parents", ())
    if isinstance(parents, str) or not isinstance(parents, Sequence):
        raise _err(name, "parents", "must be a list of node names", parents)
    if not all(isinstance(p, str) for p in parents):
        raise _err(name, "parents", "must be a list of node names", parents)
    if len(set(parents)) != len(parents):
        raise _err(name, "parents", "lists a parent twice", list(parents))
    if name in parents:
        raise _err(
            name, "parents", "a node cannot list itself (its own past is implicit)", list(parents)
        )
    mode = fields.get("mode", "default")
    if mode not in MODES:
        raise _err(name, "mode", f"must be one of {MODES}", mode)
    kernel_type = fields.get("kernel_type", "product")
    if kernel_type not in KERNEL_TYPES:
        raise _err(name, "kernel_type", f"must be one of {KERNEL_TYPES}", kernel_type)
    observed = fields.get("observed", False)
    if not isinstance(observed, bool):
        raise _err(name, "observed", "must be true or false", observed)
    return NodeSpec(name, dim, float(alpha), tuple(parents), mode, kernel_type, observed)


def _find_cycle(hidden: dict[str, NodeSpec]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for p in hidden[name].parents:
            if p not in hidden:
                continue
            if state.get(p) == 1:
                return stack[stack.index(p) :] + [p]
            if p not in state and (cycle := visit(p)):
                return cycle
        stack.pop()
        state[name] = 2
        return None

    for name in hidden:
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def _topological(hidden: dict[str, NodeSpec]) -> list[NodeSpec]:
    order: list[NodeSpec] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        for p in hidden[name].parents:
            if p in hidden:
                visit(p)
        done.add(name)
        order.append(hidden[name])

    for name in hidden:
        visit(name)
    return order


def parse_graph(spec: Any) -> Graph:
    """Validates a graph spec (mapping name -> fields, or list of dicts with 'name')."""
    nodes: dict[str, NodeSpec] = {}
    for name, fields in _as_items(spec):
        if name in nodes:
            raise _err(name, "name", "is used by two nodes", name)
        nodes[name] = _node(name, fields)
    observed = [n for n in nodes.values() if n.observed]
    if len(observed) != 1:
        names = [n.name for n in observed]
        raise GraphError(
            f"graph field 'observed': exactly one node must be observed, got {len(observed)} {names}"
        )
    x = observed[0]
    for n in nodes.values():
        for p in n.parents:
            if p not in nodes:
                raise _err(n.name, "parents", f"unknown parent {p!r}", list(n.parents))
    if x.mode in ("slow", "dead"):
        raise _err(x.name, "mode", "slow and dead are not allowed on the observed node", x.mode)
    if not x.parents:
        raise _err(x.name, "parents", "the observed node needs at least one hidden parent", [])
    hidden = {name: n for name, n in nodes.items() if not n.observed}
    for n in hidden.values():
        if n.mode == "slow" and n.parents:
            raise _err(n.name, "parents", "a slow node has no parents", list(n.parents))
    cycle = _find_cycle(hidden)
    if cycle:
        raise GraphError(
            f"graph field 'parents': hidden-to-hidden edges form a cycle: {' -> '.join(cycle)}"
        )
    ancestors: set[str] = set()
    todo = list(x.parents)
    while todo:
        name = todo.pop()
        if name not in ancestors:
            ancestors.add(name)
            todo.extend(p for p in hidden[name].parents if p in hidden)
    dropped = [name for name in hidden if name not in ancestors]
    if dropped:
        warnings.warn(
            f"graph: hidden nodes {dropped} are not ancestors of {x.name!r} and are dropped",
            stacklevel=2,
        )
    order = [n for n in _topological(hidden) if n.name in ancestors]
    graph = Graph(tuple(order), x)
    for n in graph.nodes:
        entries = math.prod(graph.input_dims(n)) * n.state_dim
        if entries > MAX_TABLE_ENTRIES:
            raise _err(
                n.name,
                "parents",
                f"the kernel table would have {entries} entries (limit {MAX_TABLE_ENTRIES})",
                list(n.parents),
            )
    return graph


def with_alphas(
    spec: Mapping[str, Mapping[str, Any]],
    alpha_x: float | None = None,
    alpha_z: float | None = None,
) -> dict[str, dict[str, Any]]:
    """A copy of a graph spec with the observed node's alpha set to `alpha_x` and every hidden
    node's to `alpha_z` (None keeps a node's own)."""
    out = {name: dict(fields) for name, fields in spec.items()}
    for fields in out.values():
        override = alpha_x if fields.get("observed", False) else alpha_z
        if override is not None:
            fields["alpha"] = override
    return out
