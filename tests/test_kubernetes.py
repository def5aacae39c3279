"""deploy/kubernetes: both overlays rendered with `kubectl kustomize`, every object checked against the
Kubernetes 1.33 schemas (kubernetes-validate, offline), then the points of the deployment one by one."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import kubernetes_validate
import numpy as np
import pytest
import yaml
from upstreams import FailingPod, NameServer

from python_backends.paths import PROJECT_ROOT

KUBERNETES = PROJECT_ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAYS = ("gpu", "cpu")
SCHEMA_VERSION = "1.33.0"
CRD_KINDS = {"PodMonitor", "PrometheusRule"}  # Prometheus Operator kinds: no schema in kubernetes-validate
RECORD = "yolov8:infer_queue_per_compute:ratio"
STAGES = ("yolov8_preprocess", "yolov8_infer", "yolov8_postprocess")
GPU_ONLY_FLAGS = ("--model-config-name=gpu", "--cuda-memory-pool-byte-size=")
BATCH_BYTES = 32 * 3 * 640 * 640 * 4  # max_batch_size 32 of FP32 640x640


def kubectl() -> str:
    """The kubectl that `make setup` left in the venv, else the one on PATH."""
    venv = Path(sys.executable).parent / "kubectl"
    found = str(venv) if venv.exists() else shutil.which("kubectl")
    assert found, "kubectl is missing: `make setup` installs one"
    return found


def render(overlay: str) -> list[dict]:
    """The objects of ``kubectl kustomize deploy/kubernetes/overlays/<overlay>``."""
    reply = subprocess.run(
        [kubectl(), "kustomize", str(KUBERNETES / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert reply.returncode == 0, reply.stderr
    assert reply.stderr == "", f"kustomize warns: {reply.stderr}"
    return [doc for doc in yaml.safe_load_all(reply.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


@pytest.fixture(scope="module")
def gpu() -> list[dict]:
    return render("gpu")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{len(matches)} {kind}/{name} rendered"
    return matches[0]


def triton_pod(objects: list[dict]) -> dict:
    return find(objects, "Deployment", "yolov8-triton")["spec"]["template"]


def triton_container(objects: list[dict]) -> dict:
    (container,) = [c for c in triton_pod(objects)["spec"]["containers"] if c["name"] == "tritonserver"]
    return container


def flag(args: list[str], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    return value


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def volume_at(pod: dict, container: dict, path: str) -> dict:
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    return volume


def quantity_bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", quantity).groups()
    return int(number) << {None: 0, "Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40}[unit]


def test_every_object_passes_the_kubernetes_schemas(overlay):
    name, objects = overlay
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    assert {"ConfigMap", *CRD_KINDS} <= kinds
    for obj in objects:
        where = f"{name}: {obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert obj["kind"] in CRD_KINDS, f"{where}: no schema"
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where}: {error.message} at {list(error.path)}")


def test_probes_ask_triton_for_readiness_and_liveness(overlay):
    container = triton_container(overlay[1])
    http_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    assert http_port == 8000
    for probe, path in (("readinessProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live")):
        assert container[probe]["httpGet"]["path"] == path
        assert container[probe]["httpGet"]["port"] in ("http", http_port)


def test_startup_probe_allows_an_engine_build_and_the_model_load(overlay):
    startup = triton_container(overlay[1])["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 15 * 60  # a TensorRT build takes minutes


def test_dev_shm_is_memory_sized_for_the_python_backend(overlay, compose):
    pod = triton_pod(overlay[1])
    volume = volume_at(pod, triton_container(overlay[1]), "/dev/shm")
    assert volume["emptyDir"]["medium"] == "Memory"
    size = quantity_bytes(volume["emptyDir"]["sizeLimit"])
    assert size >= 4 * BATCH_BYTES
    number, unit = re.fullmatch(r"(\d+)([kmg])b", compose["services"]["triton"]["shm_size"]).groups()
    assert size == quantity_bytes(f"{number}{unit.upper()}i")  # the same as docker compose's shm_size


def test_grace_period_outlasts_the_pre_stop_wait_and_the_drain(overlay):
    pod, container = triton_pod(overlay[1]), triton_container(overlay[1])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    exit_timeout = int(flag(container["args"], "--exit-timeout-secs"))
    assert pod["spec"]["terminationGracePeriodSeconds"] > int(pre_stop[1]) + exit_timeout


def test_resources_are_requested_and_limited(overlay):
    name, objects = overlay
    resources = triton_container(objects)["resources"]
    for key in ("cpu", "memory"):
        assert key in resources["requests"] and key in resources["limits"], key
    dshm = volume_at(triton_pod(objects), triton_container(objects), "/dev/shm")["emptyDir"]
    assert quantity_bytes(resources["limits"]["memory"]) > quantity_bytes(dshm["sizeLimit"])  # charged to the pod
    gpus = {resources["requests"].get("nvidia.com/gpu"), resources["limits"].get("nvidia.com/gpu")}
    assert gpus == ({1} if name == "gpu" else {None})


def test_pods_run_as_the_images_non_root_user_on_a_read_only_root(overlay):
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    image_uid = int(re.search(r"^ARG SERVER_UID=(\d+)$", dockerfile, re.M).group(1))
    for deployment in ("yolov8-triton", "yolov8-gateway"):
        pod = find(overlay[1], "Deployment", deployment)["spec"]["template"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["securityContext"]["runAsUser"] > 0
        for container in pod["spec"]["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, deployment
            assert context["allowPrivilegeEscalation"] is False, deployment
            assert context["capabilities"]["drop"] == ["ALL"], deployment
    assert triton_pod(overlay[1])["spec"]["securityContext"]["runAsUser"] == image_uid


def test_openvino_compiles_into_a_writable_tmp(overlay):
    """The image sets YOLOV8_OPENVINO_CACHE under /tmp; on a read-only root, /tmp must be a volume of the pod."""
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"^\s+YOLOV8_OPENVINO_CACHE=/tmp/\S+", dockerfile, re.M)
    container = triton_container(overlay[1])
    assert "emptyDir" in volume_at(triton_pod(overlay[1]), container, "/tmp")
    assert "YOLOV8_OPENVINO_CACHE" not in {e["name"] for e in container["env"]}


def test_admin_key_comes_from_a_secret_that_is_not_committed(overlay):
    container = triton_container(overlay[1])
    (key,) = [e for e in container["env"] if e["name"] == "TRITON_ADMIN_KEY"]
    assert set(key["valueFrom"]["secretKeyRef"]) == {"name", "key"}
    for name in ("--http-restricted-api", "--grpc-restricted-protocol"):
        assert flag(container["args"], name).endswith(":admin-key=$(TRITON_ADMIN_KEY)")
    assert not [o for o in overlay[1] if o["kind"] == "Secret"]  # created by hand: `kubectl create secret`


def test_engine_cache_is_on_a_shared_persistent_volume(gpu):
    container = triton_container(gpu)
    (engine_dir,) = [e["value"] for e in container["env"] if e["name"] == "YOLOV8_ENGINE_DIR"]
    volume = volume_at(triton_pod(gpu), container, engine_dir)
    claim = find(gpu, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # replicas on several nodes share the engines
    assert "emptyDir" not in volume


def test_services_for_clients_client_side_balancing_and_metrics(overlay):
    objects = overlay[1]
    triton_labels = triton_pod(objects)["metadata"]["labels"]
    gateway_labels = find(objects, "Deployment", "yolov8-gateway")["spec"]["template"]["metadata"]["labels"]
    clients = find(objects, "Service", "yolov8-triton")["spec"]
    headless = find(objects, "Service", "yolov8-triton-headless")["spec"]
    metrics = find(objects, "Service", "yolov8-triton-metrics")["spec"]
    assert selects(clients["selector"], gateway_labels)  # clients go through the L7 gateway
    assert {p["name"]: p["port"] for p in clients["ports"]} == {"grpc": 8001, "http": 8000}
    assert headless["clusterIP"] == "None" and selects(headless["selector"], triton_labels)
    assert {p["name"]: p["port"] for p in headless["ports"]} == {"grpc": 8001, "http": 8000}
    assert selects(metrics["selector"], triton_labels)
    assert [(p["port"], p["targetPort"]) for p in metrics["ports"]] == [(8002, "metrics")]
    container_ports = {p["name"]: p["containerPort"] for p in triton_container(objects)["ports"]}
    assert container_ports == {"http": 8000, "grpc": 8001, "metrics": 8002}


def test_hpa_scales_on_the_recorded_ratio_that_the_adapter_serves(overlay):
    objects = overlay[1]
    hpa = find(objects, "HorizontalPodAutoscaler", "yolov8-triton")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "yolov8-triton"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["target"]["type"] == "AverageValue"
    adapter = yaml.safe_load(find(objects, "ConfigMap", "yolov8-prometheus-adapter-rules")["data"]["config.yaml"])
    (rule,) = adapter["rules"]
    assert rule["seriesQuery"].startswith(RECORD + "{")
    assert re.fullmatch(rule["name"]["matches"], RECORD)
    assert rule["name"]["as"] == metric["pods"]["metric"]["name"]
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert "<<.Series>>{<<.LabelMatchers>>}" in rule["metricsQuery"]


def test_prometheus_rule_records_queue_per_compute_of_yolov8_infer_per_pod(overlay):
    (group,) = find(overlay[1], "PrometheusRule", "yolov8-triton")["spec"]["groups"]
    (rule,) = group["rules"]
    assert rule["record"] == RECORD
    numerator, denominator = rule["expr"].split("\n/\n")
    assert 'rate(nv_inference_queue_duration_us{model="yolov8_infer"}' in numerator
    assert 'rate(nv_inference_compute_infer_duration_us{model="yolov8_infer"}' in denominator
    assert all("by (namespace, pod)" in side for side in (numerator, denominator))


def test_pod_monitor_scrapes_each_triton_pods_metrics_port(overlay):
    objects = overlay[1]
    monitor = find(objects, "PodMonitor", "yolov8-triton")["spec"]
    assert selects(monitor["selector"]["matchLabels"], triton_pod(objects)["metadata"]["labels"])
    (endpoint,) = monitor["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"


def test_hpa_target_replica_bounds_and_windows_are_the_documented_ones(overlay):
    """README: AverageValue 1, 2 to 8 replicas, scale-down after 5 minutes."""
    spec = find(overlay[1], "HorizontalPodAutoscaler", "yolov8-triton")["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 8)
    (metric,) = spec["metrics"]
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 30


def test_rolling_update_starts_a_new_pod_before_an_old_one_drains(overlay):
    strategy = find(overlay[1], "Deployment", "yolov8-triton")["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


@pytest.mark.parametrize("deployment", ["yolov8-triton", "yolov8-gateway"])
def test_disruption_budget_takes_one_pod_at_a_time(overlay, deployment):
    objects = overlay[1]
    budget = find(objects, "PodDisruptionBudget", deployment)["spec"]
    labels = find(objects, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    assert selects(budget["selector"]["matchLabels"], labels)
    assert budget["maxUnavailable"] == 1
    assert find(objects, "HorizontalPodAutoscaler", "yolov8-triton")["spec"]["minReplicas"] == 2  # one keeps serving


def test_network_policy_opens_the_gateway_to_clients_on_its_two_ports(overlay):
    objects = overlay[1]
    policy = find(objects, "NetworkPolicy", "yolov8-gateway")["spec"]
    gateway_labels = find(objects, "Deployment", "yolov8-gateway")["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["podSelector"]["matchLabels"], gateway_labels)
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}, {"port": 8001, "protocol": "TCP"}]}]


def test_network_policy_opens_inference_to_clients_and_metrics_to_monitoring_only(overlay):
    objects = overlay[1]
    policy = find(objects, "NetworkPolicy", "yolov8-triton")["spec"]
    assert selects(policy["podSelector"]["matchLabels"], triton_pod(objects)["metadata"]["labels"])
    assert policy["policyTypes"] == ["Ingress"]
    gateway_labels = find(objects, "Deployment", "yolov8-gateway")["spec"]["template"]["metadata"]["labels"]
    opened = {}
    for rule in policy["ingress"]:
        assert rule.get("from") and rule.get("ports"), f"a rule open to every peer or port: {rule}"
        for port in rule["ports"]:
            opened.setdefault(port["port"], []).extend(rule["from"])
    assert sorted(opened) == [8000, 8001, 8002]
    for port in (8000, 8001):
        assert any(selects(p.get("podSelector", {}).get("matchLabels"), gateway_labels) for p in opened[port])
        assert {"podSelector": {"matchLabels": {"yolov8-triton-client": "true"}}} in opened[port]
        assert all(set(p) == {"podSelector"} for p in opened[port]), "inference open beyond this namespace's pods"
    assert opened[8002] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_grafana_dashboard_shows_stages_throughput_queue_depth_and_the_hpa_metric(overlay):
    dashboard_file = BASE / "grafana-dashboard.json"
    config_map = find(overlay[1], "ConfigMap", "yolov8-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"]["grafana-dashboard.json"] == dashboard_file.read_text()
    queries = [t["expr"] for panel in json.loads(dashboard_file.read_text())["panels"] for t in panel["targets"]]
    assert all("$" not in q for q in queries), "a Grafana variable: the query must run on a plain Prometheus"
    for stage in ("queue", "compute_input", "compute_infer", "compute_output"):
        (query,) = [q for q in queries if f"nv_inference_{stage}_duration_us" in q]
        assert "by (model)" in query and all(model in query for model in STAGES), stage
    assert any(re.search(r"rate\(nv_inference_count\{model=~\"yolov8\|yolov8_raw\"\}", q) for q in queries)
    assert any("nv_inference_pending_request_count" in q for q in queries)
    assert RECORD in queries


def test_triton_runs_the_docker_compose_command(overlay, compose):
    name, objects = overlay
    args = [a.replace("$(TRITON_ADMIN_KEY)", "KEY") for a in triton_container(objects)["args"]]
    command = [re.sub(r"\$\{TRITON_ADMIN_KEY:\?[^}]*\}", "KEY", a) for a in compose["services"]["triton"]["command"]]
    if name == "cpu":
        command = [a for a in command if not a.startswith(GPU_ONLY_FLAGS)]
    assert args[0] == command[0] == "tritonserver"
    assert sorted(args) == sorted(command)
    if name == "gpu":
        assert flag(args, "--cuda-memory-pool-byte-size") == "0:536870912"  # 512 MiB: a queue of FP32 batches
    env = {e["name"]: e.get("value") for e in triton_container(objects)["env"]}
    compose_env = compose["services"]["triton"]["environment"]
    assert {key: env.get(key) for key in compose_env} == compose_env


def test_pods_run_the_image_that_docker_compose_builds(overlay, compose):
    image = triton_container(overlay[1])["image"]
    compose_image = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", compose["services"]["triton"]["image"])
    assert image == compose_image


def test_gateway_caps_request_bodies_at_the_image_byte_limit_plus_headroom(overlay):
    objects = overlay[1]
    template = find(objects, "ConfigMap", "yolov8-gateway-nginx")["data"]["yolov8-gateway.conf.template"]
    preprocess = (PROJECT_ROOT / "model_repository" / "yolov8_preprocess" / "config.pbtxt").read_text()
    image_limit = int(re.search(r'key: "max_image_bytes", value: \{ string_value: "(\d+)" \}', preprocess).group(1))
    (cap,) = re.findall(r"^client_max_body_size (\d+)m;$", template, re.M)  # http level: every server
    assert image_limit < int(cap) << 20 <= 2 * image_limit
    assert re.search(r"error_page 413 = @grpc_too_large;", template)
    too_large = template.split("location @grpc_too_large {", 1)[1].split("}", 1)[0]
    assert "add_header grpc-status 8 always;" in too_large  # RESOURCE_EXHAUSTED, not an HTTP 413 gRPC can't read


def test_gateway_balances_each_request_over_the_ready_triton_pods(overlay):
    objects = overlay[1]
    template = find(objects, "ConfigMap", "yolov8-gateway-nginx")["data"]["yolov8-gateway.conf.template"]
    gateway = find(objects, "Deployment", "yolov8-gateway")["spec"]["template"]["spec"]
    (nginx,) = gateway["containers"]
    ports = {p["name"]: p["containerPort"] for p in nginx["ports"]}
    assert re.search(rf"listen {ports['grpc']} http2;", template) and re.search(rf"listen {ports['http']};", template)
    assert "grpc_pass grpc://$triton:8001;" in template and "proxy_pass http://$triton:8000;" in template
    assert template.count("set $triton ${TRITON_UPSTREAM};") == 2
    env = {e["name"]: e.get("value") for e in nginx["env"]}
    assert env["TRITON_UPSTREAM"].startswith("yolov8-triton-headless.$(POD_NAMESPACE).svc.")
    assert (
        re.search(r"^resolver \$\{NGINX_LOCAL_RESOLVERS\} valid=\d+s", template, re.M)
        and env["NGINX_ENTRYPOINT_LOCAL_RESOLVERS"]
    )
    mounts = {m["mountPath"]: m["name"] for m in nginx["volumeMounts"]}
    (templates,) = [v for v in gateway["volumes"] if v["name"] == mounts["/etc/nginx/templates"]]
    assert templates["configMap"]["name"] == "yolov8-gateway-nginx"


# --- the gateway's nginx config, run by a real nginx in front of the test tritonserver ---


HEADLESS = "yolov8-triton-headless.test"  # what the gateway resolves, as it resolves the headless Service
TRITON_POD, DROPPING_POD, GONE_POD = "127.0.0.1", "127.0.0.2", "127.0.0.3"  # the test tritonserver is on 127.0.0.1


@dataclass
class Gateway:
    grpc_url: str
    http_url: str
    dns: NameServer
    dropping: FailingPod  # takes each connection on DROPPING_POD and closes it unanswered
    error_log: Path

    def refused_at(self, address: str, scheme: str) -> int:
        """nginx's 'Connection refused' errors so far for upstream ``scheme``://``address``."""
        lines = self.error_log.read_text().splitlines()
        return sum(
            "(111: Connection refused)" in line and f'upstream: "{scheme}://{address}:' in line for line in lines
        )


@pytest.fixture(scope="module")
def pod(yolo11n_repository, tmp_path_factory):
    """The Triton behind the gateway: YOLO11n, ten times cheaper per request than the default model."""
    from own_server import options, started

    with started(options(yolo11n_repository), tmp_path_factory.mktemp("pod") / "tritonserver.log") as server:
        yield server


@pytest.fixture(scope="module")
def bus_boxes() -> int:
    """bus.jpg's detections by the pod's model at the served defaults, as Ultralytics found them."""
    reference = json.loads((PROJECT_ROOT / "tests" / "reference" / "model_families.json").read_text())
    assert reference["settings"]["conf"] == 0.25 and reference["settings"]["iou"] == 0.7
    return len(reference["models"]["yolo11n"]["results"]["bus.jpg"]["detections"])


@pytest.fixture(scope="module")
def gateway(pod, tmp_path_factory):
    """nginx with base/gateway-nginx.conf.template on free loopback ports. It resolves HEADLESS with a DNS server
    of the test's (at first: TRITON_POD only); DROPPING_POD listens on the pod's ports and drops each connection;
    nothing listens on GONE_POD."""
    from cluster.config import gateway_config
    from cluster.local import find_tool
    from serving.processes import free_port
    from serving.server import http_ok

    nginx = find_tool("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed here")
    grpc_port, http_port, health_port = free_port(), free_port(), free_port()
    root = tmp_path_factory.mktemp("gateway")
    (root / "nginx").mkdir()  # its pid and temp files
    dns = NameServer(HEADLESS, [TRITON_POD])
    dropping = FailingPod(DROPPING_POD, [pod.options.grpc_port, pod.options.http_port])
    listen = {8001: f"127.0.0.1:{grpc_port}", 8000: f"127.0.0.1:{http_port}", 8081: f"127.0.0.1:{health_port}"}
    upstream = {8001: pod.options.grpc_port, 8000: pod.options.http_port}
    config = gateway_config(listen, HEADLESS, upstream, root, resolver=f"127.0.0.1:{dns.port}")
    (root / "nginx.conf").write_text(config)
    error_log = root / "error.log"
    with open(error_log, "wb") as errors:
        process = subprocess.Popen([nginx, "-p", str(root), "-c", str(root / "nginx.conf")], stderr=errors)
    try:
        deadline = time.monotonic() + 10
        while not http_ok(f"http://127.0.0.1:{health_port}/healthz", timeout_s=1):
            assert process.poll() is None, error_log.read_text()
            assert time.monotonic() < deadline, "nginx did not start within 10 s"
            time.sleep(0.1)
        yield Gateway(f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}", dns, dropping, error_log)
    finally:
        process.terminate()
        process.wait(timeout=10)
        dns.close()
        dropping.close()


def serve_from(gateway: Gateway, pods: list[str]) -> None:
    """Make HEADLESS resolve to ``pods``, and wait until nginx has asked again (its cache holds them then)."""
    from serving.probe import probe_inference

    asked, gateway.dns.addresses = gateway.dns.queries, list(pods)
    deadline = time.monotonic() + 15
    while gateway.dns.queries == asked:  # nginx asks on the first request after its 5 s of validity
        assert time.monotonic() < deadline, "nginx never resolved the name again"
        probe_inference(f"http://{gateway.http_url}", timeout_s=10)
        time.sleep(0.1)


def _infer_image(url: str, image: bytes):
    """One gRPC request to the yolov8 ensemble; returns its num_dets, or raises InferenceServerException."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        image_input = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        image_input.set_data_from_numpy(np.array([[image]], dtype=object))
        reply = client.infer("yolov8", [image_input], client_timeout=60)
        return int(reply.as_numpy("num_dets")[0][0])


def _settled_requests(http_url: str) -> int:
    """The ensemble's request count once it holds still: Triton counts a request a moment after answering it, so
    the count can still move for the previous test's last request."""
    count = _ensemble_requests(http_url)
    while True:
        time.sleep(0.2)
        if (again := _ensemble_requests(http_url)) == count:
            return count
        count = again


def _ensemble_requests(http_url: str) -> int:
    """Requests the yolov8 ensemble has answered, from Triton's statistics at ``http_url`` (http://host:port)."""
    with urllib.request.urlopen(f"{http_url}/v2/models/yolov8/stats", timeout=10) as reply:
        stats = json.load(reply)["model_stats"][0]["inference_stats"]
    return int(stats["success"]["count"]) + int(stats["fail"]["count"])


def test_gateway_serves_grpc_and_http_through_to_triton(gateway, sample_images):
    grpc_url, http_url = gateway.grpc_url, gateway.http_url
    assert _infer_image(grpc_url, sample_images["bus.jpg"].read_bytes()) > 0
    with urllib.request.urlopen(f"http://{http_url}/v2/health/ready", timeout=10) as reply:
        assert reply.status == 200


def test_gateway_refuses_an_oversized_request_before_triton_sees_it(gateway, pod):
    """Each refused within a second (README; 0.1-0.26 s measured here), and none reaches the ensemble."""
    from tritonclient.utils import InferenceServerException

    grpc_url, http_url = gateway.grpc_url, gateway.http_url
    before = _settled_requests(pod.http_url)
    started = time.monotonic()
    with pytest.raises(InferenceServerException) as refused:
        _infer_image(grpc_url, bytes(41 << 20))  # 41 MiB: over the 40 MiB cap
    took = {"gRPC": time.monotonic() - started}
    assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED", refused.value
    assert refused.value.message() == "request body larger than 40 MiB: refused by the gateway"
    request = urllib.request.Request(f"http://{http_url}/v2/models/yolov8/infer", data=bytes(41 << 20), method="POST")
    started = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as http_refused:
        urllib.request.urlopen(request, timeout=30)
    took["HTTP"] = time.monotonic() - started
    assert http_refused.value.code == 413
    json_body = urllib.request.Request(
        f"http://{http_url}/v2/models/yolov8/infer", data=b" " * (3 << 20), method="POST"
    )
    started = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as json_refused:  # Triton 2.51 crashed parsing 4 MiB of JSON
        urllib.request.urlopen(json_body, timeout=30)
    took["JSON"] = time.monotonic() - started
    assert json_refused.value.code == 413
    assert max(took.values()) < 1.0, took
    assert _ensemble_requests(pod.http_url) == before  # neither request reached the ensemble


def test_gateway_sends_a_request_that_a_gone_pod_refuses_to_another_pod(gateway, pod, sample_images, bus_boxes):
    """nginx starts each request on a random one of the resolved pods; one that the gone pod refuses (nothing
    listens there) is sent to the other, gRPC and HTTP: every request answered, each once by Triton."""
    from serving.probe import probe_inference

    bus = sample_images["bus.jpg"].read_bytes()
    try:
        serve_from(gateway, [GONE_POD, TRITON_POD])
        refused = {scheme: gateway.refused_at(GONE_POD, scheme) for scheme in ("grpc", "http")}
        answered = _settled_requests(pod.http_url)
        for _ in range(16):  # that no request starts on the gone pod has odds of 1/2 each: 16 in a row, 1.5e-5
            assert _infer_image(gateway.grpc_url, bus) == bus_boxes  # bus.jpg, 137 kB
            assert probe_inference(f"http://{gateway.http_url}", image=bus).ok
    finally:
        gateway.dns.addresses = [TRITON_POD]
    assert _settled_requests(pod.http_url) - answered == 32
    for scheme in ("grpc", "http"):
        assert gateway.refused_at(GONE_POD, scheme) > refused[scheme], f"no {scheme} request went to the gone pod"


def test_gateway_sends_a_request_that_a_pod_dropped_to_another_pod(gateway, pod, sample_images):
    """A pod that takes the connection and closes it unanswered (one that died under the request): nginx sends the
    request to the other pod: HTTP whatever its size, gRPC when its body is under 64 KiB. (nginx 1.22, Debian's,
    does not resend a gRPC body of 64 KiB or more once a pod took it: 'zero size buf in chain writer', and the
    client gets UNAVAILABLE 'no Triton replica answered: retry later', which it retries.)"""
    from serving.probe import probe_inference, tiny_png

    bus = sample_images["bus.jpg"].read_bytes()
    try:
        serve_from(gateway, [DROPPING_POD, TRITON_POD])
        dropped, answered = dict(gateway.dropping.connections), _settled_requests(pod.http_url)
        for _ in range(16):
            assert _infer_image(gateway.grpc_url, tiny_png()) >= 0  # an 8x8 gray PNG: a 170-byte body
            assert probe_inference(f"http://{gateway.http_url}", image=bus).ok
    finally:
        gateway.dns.addresses = [TRITON_POD]
    assert _settled_requests(pod.http_url) - answered == 32
    for port in (pod.options.grpc_port, pod.options.http_port):
        assert gateway.dropping.connections[port] > dropped[port], f"no request went to the dropping pod: {port}"


def test_gateway_resolves_the_pods_again_within_6_s(gateway):
    """nginx's ``resolver ... valid=5s``: a change of the Service's addresses reaches requests within 5 to 6 s."""
    from tritonclient.utils import InferenceServerException

    from serving.probe import tiny_png

    def answered() -> bool:
        try:
            return _infer_image(gateway.grpc_url, tiny_png()) >= 0
        except InferenceServerException as exc:
            assert exc.status() == "StatusCode.UNAVAILABLE", exc
            assert exc.message() == "no Triton replica answered: retry later", exc
            return False

    try:
        serve_from(gateway, [GONE_POD])
        assert not answered()
        switched, asked = time.monotonic(), gateway.dns.queries
        gateway.dns.addresses = [TRITON_POD]
        while not answered():
            assert time.monotonic() < switched + 15, "the new address never reached nginx"
            time.sleep(0.1)
        took = time.monotonic() - switched
    finally:
        gateway.dns.addresses = [TRITON_POD]
    assert gateway.dns.queries > asked, "nginx did not ask again"
    # nginx counts the 5 s in whole seconds of its clock (5 to 6 s), then one request: 6.05 s measured here
    assert took < 5.0 + 1.0 + 1.0, f"{took:.1f} s"


# --- PromQL checked by Prometheus' own promtool (Debian's prometheus package) ---


def promtool(tmp_path, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed here")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_recording_rule_gives_queue_per_compute_per_pod_in_prometheus(tmp_path):
    """promtool evaluates the rule on synthetic counters: a busy pod, an idle one, and another model's queue."""
    rule = yaml.safe_load((BASE / "prometheus-rule.yaml").read_text())
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    busy, idle = 'namespace="local",pod="replica-0"', 'namespace="local",pod="replica-1"'
    series = {  # counters in µs, one sample per 5 s: replica-0 waits 1 ms per 4 ms of compute
        f'nv_inference_queue_duration_us{{model="yolov8_infer",{busy}}}': "0+1000x40",
        f'nv_inference_compute_infer_duration_us{{model="yolov8_infer",{busy}}}': "0+4000x40",
        f'nv_inference_queue_duration_us{{model="yolov8_preprocess",{busy}}}': "0+90000x40",
        f'nv_inference_queue_duration_us{{model="yolov8_infer",{idle}}}': "0x40",
        f'nv_inference_compute_infer_duration_us{{model="yolov8_infer",{idle}}}': "0x40",
    }
    expected = [{"labels": f"{RECORD}{{{busy}}}", "value": 0.25}, {"labels": f"{RECORD}{{{idle}}}", "value": 0}]
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "5s",
        "tests": [
            {
                "interval": "5s",
                "input_series": [{"series": name, "values": values} for name, values in series.items()],
                "promql_expr_test": [{"expr": RECORD, "eval_time": "2m", "exp_samples": expected}],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    reply = promtool(tmp_path, "test", "rules", "test.yaml")
    assert reply.returncode == 0, reply.stdout + reply.stderr


def test_dashboard_queries_are_valid_promql(tmp_path):
    panels = json.loads((BASE / "grafana-dashboard.json").read_text())["panels"]
    rules = [{"record": f"panel:{p['id']}:{t['refId']}", "expr": t["expr"]} for p in panels for t in p["targets"]]
    (tmp_path / "panels.yaml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    reply = promtool(tmp_path, "check", "rules", "panels.yaml")
    assert reply.returncode == 0, reply.stdout + reply.stderr
    assert f"SUCCESS: {len(rules)} rules found" in reply.stdout
