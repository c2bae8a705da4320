"""cluster/kuberay/ manifests checked against KubeRay's documented API.

No registry package ships the RayCluster / RayJob CRD schemas (PyPI has no
KubeRay client with them; the CRDs live in the ray-project/kuberay repository,
ray-operator/config/crd/bases/). So the fields are checked against a schema
written here from KubeRay's v1 API (those CRDs, operator 1.x): every key of
the KubeRay-level objects (spec, head group, worker groups, autoscaler
options, RayJob spec) must be one the API defines, with its type, the
required ones present and enums respected. Pod templates are checked only
for the Kubernetes fields these manifests use (a misspelt PodSpec or
container key fails; the full Kubernetes schema is not here).
"""
import copy

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT

KUBERAY = ROOT / "cluster" / "kuberay"

_INT, _STR, _BOOL, _OBJ, _ARR = ({"type": t} for t in ("integer", "string", "boolean", "object", "array"))
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

CONTAINER = {
    "type": "object", "required": ["name", "image"], "additionalProperties": False,
    "properties": {k: _OBJ if k in ("resources", "securityContext", "lifecycle", "livenessProbe", "readinessProbe",
                                      "startupProbe") else (_STR if k in ("name", "image", "imagePullPolicy", "workingDir")
                                                            else _ARR)
                   for k in ("name", "image", "imagePullPolicy", "command", "args", "env", "envFrom", "ports",
                             "resources", "volumeMounts", "securityContext", "lifecycle", "livenessProbe",
                             "readinessProbe", "startupProbe", "workingDir")},
}
POD_TEMPLATE = {
    "type": "object", "required": ["spec"], "additionalProperties": False,
    "properties": {
        "metadata": _OBJ,
        "spec": {
            "type": "object", "required": ["containers"], "additionalProperties": False,
            "properties": {"containers": {"type": "array", "minItems": 1, "items": CONTAINER},
                           **{k: _ARR for k in ("initContainers", "volumes", "tolerations", "imagePullSecrets",
                                                "topologySpreadConstraints")},
                           **{k: _OBJ for k in ("nodeSelector", "affinity", "securityContext")},
                           **{k: _STR for k in ("serviceAccountName", "priorityClassName", "runtimeClassName",
                                                "schedulerName", "restartPolicy")},
                           "terminationGracePeriodSeconds": _INT},
        },
    },
}
# KubeRay v1: RayCluster.spec.autoscalerOptions
AUTOSCALER_OPTIONS = {
    "type": "object", "additionalProperties": False,
    "properties": {"args": _ARR, "command": _ARR, "env": _ARR, "envFrom": _ARR, "idleTimeoutSeconds": _INT,
                   "image": _STR, "imagePullPolicy": _STR, "resources": _OBJ, "securityContext": _OBJ,
                   "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
                   "version": {"enum": ["v1", "v2"]}, "volumeMounts": _ARR},
}
HEAD_GROUP = {
    "type": "object", "required": ["template"], "additionalProperties": False,
    "properties": {"enableIngress": _BOOL, "headService": _OBJ, "ingressOptions": _OBJ, "labels": _STR_MAP,
                   "rayStartParams": _STR_MAP, "resources": _STR_MAP, "serviceType": _STR, "template": POD_TEMPLATE},
}
WORKER_GROUP = {
    "type": "object", "required": ["groupName", "maxReplicas", "minReplicas", "template"], "additionalProperties": False,
    "properties": {"groupName": _STR, "idleTimeoutSeconds": _INT, "labels": _STR_MAP, "maxReplicas": _INT,
                   "minReplicas": _INT, "numOfHosts": _INT, "priority": _INT, "rayStartParams": _STR_MAP,
                   "replicas": _INT, "resources": _STR_MAP, "scaleStrategy": _OBJ, "suspend": _BOOL,
                   "template": POD_TEMPLATE},
}
RAYCLUSTER_SPEC = {
    "type": "object", "required": ["headGroupSpec"], "additionalProperties": False,
    "properties": {"authOptions": _OBJ, "autoscalerOptions": AUTOSCALER_OPTIONS, "enableInTreeAutoscaling": _BOOL,
                   "gcsFaultToleranceOptions": _OBJ, "headGroupSpec": HEAD_GROUP, "headServiceAnnotations": _STR_MAP,
                   "managedBy": _STR, "networkPolicy": _OBJ, "rayVersion": _STR, "suspend": _BOOL,
                   "tlsOptions": _OBJ, "upgradeStrategy": _OBJ,
                   "workerGroupSpecs": {"type": "array", "items": WORKER_GROUP}},
}
RAYJOB_SPEC = {
    "type": "object", "additionalProperties": False,
    "properties": {"activeDeadlineSeconds": _INT, "backoffLimit": _INT, "clusterSelector": _STR_MAP,
                   "deletionStrategy": _OBJ, "entrypoint": _STR, "entrypointNumCpus": {"type": "number"},
                   "entrypointNumGpus": {"type": "number"}, "entrypointResources": _STR, "jobId": _STR,
                   "managedBy": _STR, "metadata": _STR_MAP, "preRunningDeadlineSeconds": _INT,
                   "rayClusterSpec": RAYCLUSTER_SPEC, "runtimeEnvYAML": _STR, "shutdownAfterJobFinishes": _BOOL,
                   "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
                   "submitterConfig": _OBJ, "submitterPodTemplate": POD_TEMPLATE, "suspend": _BOOL,
                   "ttlSecondsAfterFinished": _INT},
}


def _resource(kind: str, spec: dict) -> dict:
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
            "properties": {"apiVersion": {"const": "ray.io/v1"}, "kind": {"const": kind},
                           "metadata": {"type": "object", "required": ["name"]}, "spec": spec}}


RAYCLUSTER, RAYJOB = _resource("RayCluster", RAYCLUSTER_SPEC), _resource("RayJob", RAYJOB_SPEC)


def _load(name):
    return yaml.safe_load((KUBERAY / name).read_text())


@pytest.fixture()
def cluster():
    return _load("raycluster.yaml")


@pytest.fixture()
def job():
    return _load("rayjob.yaml")


def test_raycluster_matches_the_api_with_cpu_and_gpu_groups_that_autoscale(cluster):
    jsonschema.validate(cluster, RAYCLUSTER)
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu-workers", "gpu-workers"}
    for g in groups.values():
        assert 0 <= g["minReplicas"] <= g.get("replicas", 0) <= g["maxReplicas"] and g["maxReplicas"] > g["minReplicas"]
    res = {name: g["template"]["spec"]["containers"][0]["resources"] for name, g in groups.items()}
    assert res["gpu-workers"]["limits"]["nvidia.com/gpu"] >= 1
    assert "nvidia.com/gpu" not in res["cpu-workers"]["limits"]
    # one Ray version everywhere; every pod mounts the shared run directory
    import ray

    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in groups.values()]
    assert spec["rayVersion"] == ray.__version__
    for pod in pods:
        c = pod["spec"]["containers"][0]
        assert c["image"].endswith(":" + spec["rayVersion"])
        assert {"name": "runs", "mountPath": "/mnt/kgscale"} in c["volumeMounts"]
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
        assert claims == [_load("pvc.yaml")["metadata"]["name"]]
    # the custom resource of ray_cluster.yaml's GPU nodes, in the form `ray start --resources` takes
    custom = groups["gpu-workers"]["rayStartParams"]["resources"]
    assert yaml.safe_load(yaml.safe_load(custom)) == {"kgscale_gpu_node": 1}


def test_rayjob_runs_a_recipe_on_that_cluster(job, cluster, shared_datasets, monkeypatch):
    from ray.runtime_env import RuntimeEnv

    from kgscale import config as cfgmod
    from kgscale.pipeline.run import Pipeline

    jsonschema.validate(job, RAYJOB)
    spec = job["spec"]
    assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    words = spec["entrypoint"].split()
    assert words[:3] == ["cd", "/home/ray/kgscale", "&&"] and words[3:5] == ["kgscale", "run"]
    recipe, overrides = words[5], words[6:]
    assert recipe.startswith("jobs/") and (ROOT / recipe).is_file()
    monkeypatch.setenv("KGSCALE_MIRROR", str(shared_datasets))  # the recipe's datasets resolve here
    data = cfgmod.read_yaml(ROOT / recipe)
    cfgmod.apply_overrides(data, overrides)
    pipeline = Pipeline(data, recipe)  # the recipe and its overrides are a valid run config
    assert str(pipeline.run.dir).startswith("/mnt/kgscale/") and [name for name, *_ in pipeline.plan]
    env = RuntimeEnv(**yaml.safe_load(spec["runtimeEnvYAML"]))
    assert env["env_vars"] == yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())["env_vars"]


@pytest.mark.parametrize("where, key", [
    (("spec",), "enableInTreeAutoScaling"),
    (("spec", "workerGroupSpecs", 0), "maxReplica"),
    (("spec", "headGroupSpec", "template", "spec", "containers", 0), "resource"),
    (("spec", "autoscalerOptions"), "idleTimeout"),
])
def test_a_misspelt_key_is_caught(cluster, where, key):
    bad = copy.deepcopy(cluster)
    node = bad
    for w in where:
        node = node[w]
    node[key] = 1
    with pytest.raises(jsonschema.ValidationError, match=key):
        jsonschema.validate(bad, RAYCLUSTER)


def test_wrong_enum_and_missing_required_are_caught(cluster, job):
    bad = copy.deepcopy(cluster)
    bad["spec"]["autoscalerOptions"]["upscalingMode"] = "Fast"
    with pytest.raises(jsonschema.ValidationError, match="Fast"):
        jsonschema.validate(bad, RAYCLUSTER)
    bad = copy.deepcopy(cluster)
    del bad["spec"]["workerGroupSpecs"][1]["groupName"]
    with pytest.raises(jsonschema.ValidationError, match="groupName"):
        jsonschema.validate(bad, RAYCLUSTER)
    bad = copy.deepcopy(job)
    bad["spec"]["submissionMode"] = "K8sMode"
    with pytest.raises(jsonschema.ValidationError, match="K8sMode"):
        jsonschema.validate(bad, RAYJOB)
