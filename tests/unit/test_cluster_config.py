"""ray_cluster.yaml and cluster/runtime_env.yaml against Ray's own schemas."""
import copy

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.runtime_env import RuntimeEnv

from tests.conftest import ROOT


@pytest.fixture()
def cluster():
    return yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())


def test_cluster_config_is_valid_for_the_autoscaler(cluster):
    full = prepare_config(copy.deepcopy(cluster))
    validate_config(full)
    types = full["available_node_types"]
    assert full["head_node_type"] == "head"
    assert set(types) == {"head", "cpu_workers", "gpu_workers"}
    for group in ("cpu_workers", "gpu_workers"):
        assert 0 <= types[group]["min_workers"] <= types[group]["max_workers"]
    assert "g5" in types["gpu_workers"]["node_config"]["InstanceType"]
    # setup installs kgscale with torch pinned
    setup = " ".join(cluster["setup_commands"])
    assert "constraints.txt" in setup and "-e /home/ray/kgscale" in setup


def test_schema_catches_a_misspelt_key(cluster):
    cluster["available_node_types"]["gpu_workers"]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        validate_config(prepare_config(cluster))


def test_runtime_env_is_accepted_by_ray():
    env = yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())
    parsed = RuntimeEnv(**env)
    assert parsed["env_vars"]["HF_HUB_OFFLINE"] == "1"
