"""Graph validation (docs/spec.md section 1): every bad input is a GraphError naming the node and field."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from gssm_jax.gssm.graph import GraphError, parse_graph


def spec(**changes) -> dict:
    """Z1 -> Z2 -> X with X also reading Z1; `changes` maps node name to replaced fields."""
    base = {
        "Z1": dict(state_dim=3, alpha=0.5),
        "Z2": dict(state_dim=2, alpha=0.5, parents=["Z1"]),
        "X": dict(state_dim=4, alpha=0.5, parents=["Z2", "Z1"], observed=True),
    }
    for name, fields in changes.items():
        if fields is None:
            base.pop(name)
        else:
            base.setdefault(name, {}).update(fields)
    return base


def raises(spec_dict, *words: str) -> str:
    with pytest.raises(GraphError) as info:
        parse_graph(spec_dict)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    return msg


def test_valid_graph_and_accessors():
    graph = parse_graph(spec())
    assert [n.name for n in graph.hidden] == ["Z1", "Z2"]
    assert graph.observed.name == "X" and graph.vocab_size == 4
    assert graph.hidden_dims == (3, 2) and graph.joint_size == 6
    assert graph.input_dims(graph.hidden[1]) == (2, 3)
    assert graph.input_dims(graph.observed) == (2, 3)
    assert not graph.has_context and not graph.x_feeds_hidden
    assert parse_graph(graph.to_dict()) == graph
    as_list = [dict(name=k, **v) for k, v in spec().items()]
    assert parse_graph(as_list) == graph


def test_cycle_names_the_nodes_on_it():
    bad = spec(Z1=dict(parents=["Z3"]), Z3=dict(state_dim=2, alpha=1.0, parents=["Z2"]))
    msg = raises(bad, "cycle", "'parents'")
    for name in ("Z1", "Z2", "Z3"):
        assert name in msg


def test_self_cycle_and_x_listing_itself():
    raises(spec(Z1=dict(parents=["Z1"])), "'Z1'", "'parents'")
    raises(spec(X=dict(parents=["Z2", "X"])), "'X'", "'parents'", "itself")


def test_unknown_parent():
    raises(spec(Z2=dict(parents=["Z1", "Q"])), "'Z2'", "'parents'", "'Q'")


@pytest.mark.parametrize("count", [0, 2])
def test_exactly_one_observed(count):
    bad = spec(X=dict(observed=count == 2), Z2=dict(observed=count == 2))
    msg = raises(bad, "'observed'", f"got {count}")
    if count == 2:
        assert "'X'" in msg and "'Z2'" in msg


@pytest.mark.parametrize("value", [1, 0, -3, 2.5, "4", True, None])
def test_state_dim(value):
    raises(spec(Z2=dict(state_dim=value)), "'Z2'", "'state_dim'")


@pytest.mark.parametrize("value", [0, -0.1, math.nan, math.inf, -math.inf, "1", None, True])
def test_alpha(value):
    raises(spec(Z1=dict(alpha=value)), "'Z1'", "'alpha'")


def test_missing_and_unknown_fields():
    raises(
        {"Z1": dict(alpha=1.0), "X": dict(state_dim=2, alpha=1.0, parents=["Z1"], observed=True)},
        "'Z1'",
        "'state_dim'",
        "missing",
    )
    raises(spec(Z2=dict(colour="red")), "'Z2'", "'colour'")


def test_unknown_mode_and_kernel_type():
    raises(spec(Z2=dict(mode="fast")), "'Z2'", "'mode'", "fast")
    raises(spec(X=dict(kernel_type="lowrank")), "'X'", "'kernel_type'", "lowrank")


@pytest.mark.parametrize("mode", ["slow", "dead"])
def test_slow_and_dead_not_on_observed(mode):
    raises(spec(X=dict(mode=mode)), "'X'", "'mode'", mode)


def test_slow_has_no_parents():
    raises(spec(Z2=dict(mode="slow")), "'Z2'", "'parents'", "slow")
    parse_graph(spec(Z1=dict(mode="slow")))  # a parentless slow node is fine
    parse_graph(spec(Z2=dict(mode="dead"), X=dict(mode="context")))


def test_observed_needs_a_hidden_parent():
    raises(spec(X=dict(parents=[])), "'X'", "'parents'", "hidden parent")


def test_oversized_table_is_refused():
    big = {f"Z{i}": dict(state_dim=64, alpha=1.0) for i in range(5)}
    big["X"] = dict(state_dim=64, alpha=1.0, parents=list(big), observed=True)
    raises(big, "'X'", "'parents'", "entries")


def test_non_ancestors_are_dropped_with_a_warning():
    extra = spec(Z3=dict(state_dim=2, alpha=1.0, parents=["Z1"]))
    with pytest.warns(UserWarning, match="Z3"):
        graph = parse_graph(extra)
    assert [n.name for n in graph.hidden] == ["Z1", "Z2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_graph(spec())


def test_topological_order_for_random_dags():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 8))
        names = [f"N{i}" for i in range(n)]
        nodes = {
            name: dict(
                state_dim=2,
                alpha=1.0,
                parents=[p for p in names[:i] if rng.random() < 0.4]
                + (["X"] if rng.random() < 0.2 else []),
            )
            for i, name in enumerate(names)
        }
        nodes["X"] = dict(state_dim=2, alpha=1.0, parents=names, observed=True)
        shuffled = dict(sorted(nodes.items(), key=lambda _: rng.random()))
        graph = parse_graph(shuffled)
        order = [node.name for node in graph.hidden]
        assert sorted(order) == names
        for i, node in enumerate(graph.hidden):
            assert all(order.index(p) < i for p in node.parents if p != "X")
