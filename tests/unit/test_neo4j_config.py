"""Neo4j config: names that reach query text are validated; secrets stay secret."""
from __future__ import annotations

import pytest

from kgscale.config import ConfigError, build
from kgscale.kg.sources.neo4j_source import Neo4jConfig, Secret, cut, node_query, query_params, relationship_query


@pytest.mark.parametrize("key, value", [
    ("node_labels", ["Person`) DETACH DELETE n //"]),
    ("relationship_types", ["KNOWS|x"]),
    ("name_property", "name} RETURN 1 //"),
    ("database", "neo4j; DROP"),
])
def test_names_are_validated(key, value):
    with pytest.raises(ConfigError, match=f"neo4j.{key}"):
        build(Neo4jConfig, {key: value}, section="neo4j")


def test_passwords_are_refused_in_config_and_hidden_in_reprs():
    with pytest.raises(ConfigError, match="neo4j.password: secrets may not be written in configs"):
        build(Neo4jConfig, {"password": "x"}, section="neo4j")
    s = Secret("hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str([s]) and s.get() == "hunter2"


def test_queries_use_parameters_and_checked_labels():
    cfg = Neo4jConfig(node_labels=["Person", "Place"], relationship_types=["KNOWS"], key_property="uri")
    q = relationship_query(cfg)
    assert "(h:`Person` OR h:`Place`)" in q and "type(r) IN $types" in q and "h[$key_property]" in q
    assert "SKIP" not in q and "LIMIT" not in q
    assert query_params(cfg, 5, 9) == {"lo": 5, "hi": 9, "types": ["KNOWS"], "key_property": "uri",
                                       "name_property": "name", "description_property": "description"}
    assert "n[$name_property]" in node_query(cfg)


def test_id_ranges_are_cut_without_overlap_or_gaps():
    assert cut(10, 24, 12, per_task=6, parallelism=2) == [(10, 15), (16, 21), (22, 24)]
    assert cut(0, 9, 10, per_task=100, parallelism=4) == [(0, 2), (3, 5), (6, 8), (9, 9)]
    assert cut(None, None, 0, per_task=10, parallelism=2) == []
