"""The deployment files: they parse, agree with the service's settings, probes and metrics, and pass promtool.

A misspelt metric in a dashboard panel or an alert shows "No data" or never fires, which nobody
notices until it matters; so every metric they name is looked for on a running service's /metrics.
"""

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ServiceFactory
from fakearchive import FakeArchive
from thumbproxy.config import CONFIG_ENV, SETTINGS
from thumbproxy.ops.readiness import CHECK_TIMEOUT_SECONDS

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "docker-compose.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "thumbproxy.json"

SETTING_NAMES = {setting.env for setting in SETTINGS} | {CONFIG_ENV}
DEFAULTS = {setting.env: setting.default for setting in SETTINGS}
# Labels Prometheus attaches to every scraped series itself; the service never exposes them.
TARGET_LABELS = {"job", "instance"}
METRIC_NAME = re.compile(r"\bthumbproxy_[a-z0-9_]+\b")


def load_yaml(path: Path) -> list[Any]:
    return list(yaml.safe_load_all(path.read_text()))


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed (Debian/Ubuntu: apt-get install prometheus); "
            "CI installs it, and the alerting rules and Prometheus config are checked with it"
        )
    return path


def run_promtool(*arguments: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([promtool(), *map(str, arguments)], capture_output=True, text=True, cwd=cwd, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(map(str, arguments))} failed:\n{output}"
    return output


def bytes_of(quantity: str) -> int:
    """A Kubernetes quantity such as 2Gi or 512Mi in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    match = re.fullmatch(r"(\d+)([KMGT]i|[kMGT])?", str(quantity))
    assert match, f"not a quantity: {quantity!r}"
    return int(match[1]) * units.get(match[2] or "", 1)


# Kubernetes ----------------------------------------------------------------------------------


def kustomization() -> dict[str, Any]:
    return load_yaml(KUBERNETES / "kustomization.yaml")[0]


def manifests() -> list[dict[str, Any]]:
    """Every object `kubectl apply -k deploy/kubernetes` creates."""
    return [doc for name in kustomization()["resources"] for doc in load_yaml(KUBERNETES / name) if doc]


def the(kind: str) -> dict[str, Any]:
    found = [doc for doc in manifests() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in the kustomization, found {len(found)}"
    return found[0]


def container() -> dict[str, Any]:
    containers = the("Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["thumbproxy"]
    return containers[0]


def container_env() -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container().get("env", [])}


def setting_in_pod(name: str) -> str:
    """A setting's value in the pod: the container's env, else the ConfigMap, else the default."""
    env = container_env()
    if name in env:
        return env[name]["value"]
    config = the("ConfigMap")["data"]
    return config[name] if name in config else str(DEFAULTS[name]())


def pod_labels() -> dict[str, str]:
    return the("Deployment")["spec"]["template"]["metadata"]["labels"]


def test_every_yaml_file_under_deploy_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        documents = load_yaml(path)
        assert documents and all(isinstance(doc, dict) for doc in documents), path


def test_kustomization_applies_every_manifest_in_the_directory() -> None:
    listed = kustomization()["resources"]
    on_disk = sorted(path.name for path in KUBERNETES.glob("*.yaml") if path.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    kinds = sorted(doc["kind"] for doc in manifests())
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Ingress",
            "ServiceMonitor",
            "PrometheusRule",
        ]
    )
    # The image the Deployment names is the one kustomize rewrites to the registry's.
    assert container()["image"] in {image["name"] for image in kustomization()["images"]}


def test_probes_use_the_health_endpoints_on_the_served_port() -> None:
    c = container()
    ports = {port["name"]: port["containerPort"] for port in c["ports"]}
    assert ports == {"http": int(setting_in_pod("THUMBPROXY_PORT"))}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # /readyz waits for its slowest check; a probe that gives up first fails a ready pod.
    assert c["readinessProbe"]["timeoutSeconds"] > CHECK_TIMEOUT_SECONDS
    # The liveness probe starts only once the startup probe passed, so it may be strict.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30
    assert c["args"] == ["thumbproxy", "serve"]


def test_resources_and_workers() -> None:
    resources = container()["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind
    assert bytes_of(resources["limits"]["memory"]) >= bytes_of(resources["requests"]["memory"])
    # One render process per requested CPU: the default would count the node's CPUs.
    assert int(setting_in_pod("THUMBPROXY_WORKERS")) == int(resources["requests"]["cpu"])


def test_runs_as_non_root_on_a_read_only_root_with_emptydirs_where_it_writes() -> None:
    pod = the("Deployment")["spec"]["template"]["spec"]
    c = container()
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"].rstrip("/"): mount["name"] for mount in c["volumeMounts"]}
    # The disk cache, the FITS downloads, and /tmp (the render pool's forkserver socket).
    for path in (setting_in_pod("THUMBPROXY_CACHE_DIR"), setting_in_pod("TMP_DIR"), "/tmp"):
        path = path.rstrip("/")
        assert path in mounts, f"{path} is not a mount, and the root filesystem is read-only"
        assert "emptyDir" in volumes[mounts[path]], path
        assert not any(m.get("readOnly") for m in c["volumeMounts"] if m["mountPath"].rstrip("/") == path)


def test_disk_sizes_fit_their_volumes() -> None:
    pod = the("Deployment")["spec"]["template"]["spec"]
    limits = {volume["name"]: bytes_of(volume["emptyDir"]["sizeLimit"]) for volume in pod["volumes"]}
    mounts = {mount["mountPath"].rstrip("/"): mount["name"] for mount in container()["volumeMounts"]}
    # Going over an emptyDir's sizeLimit evicts the pod.
    cache_volume = limits[mounts[setting_in_pod("THUMBPROXY_CACHE_DIR").rstrip("/")]]
    assert int(setting_in_pod("THUMBPROXY_CACHE_SIZE_MB")) * 2**20 < cache_volume
    downloads_volume = limits[mounts[setting_in_pod("TMP_DIR").rstrip("/")]]
    assert int(setting_in_pod("THUMBPROXY_MAX_FITS_MB")) * 2**20 * 4 <= downloads_volume


def test_every_worker_can_take_its_render_memory_within_the_pod_limit() -> None:
    workers = int(setting_in_pod("THUMBPROXY_WORKERS"))
    render = int(setting_in_pod("THUMBPROXY_RENDER_MEMORY_MB")) * 2**20
    assert render and workers * render < bytes_of(container()["resources"]["limits"]["memory"])


def test_shutdown_finishes_within_the_grace_period() -> None:
    pod = the("Deployment")["spec"]["template"]["spec"]
    pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    sleep = int(pre_stop[1])
    assert sleep >= 5, "too short for the endpoint removal to reach the Ingress"
    drain = float(setting_in_pod("THUMBPROXY_DRAIN_SECONDS"))
    shutdown = float(setting_in_pod("THUMBPROXY_SHUTDOWN_TIMEOUT"))
    assert pod["terminationGracePeriodSeconds"] > sleep + drain + shutdown


def test_configuration_from_the_configmap_and_keys_from_a_secret() -> None:
    c = container()
    assert {"configMapRef": {"name": the("ConfigMap")["metadata"]["name"]}} in c["envFrom"]
    env = container_env()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        reference = env[key]["valueFrom"]["secretKeyRef"]
        assert reference["key"] == key and reference["name"] == "thumbproxy-s3"
        assert key not in the("ConfigMap")["data"]
    # No key is written into a manifest.
    assert not any(kind == "Secret" for kind in (doc["kind"] for doc in manifests()))


def test_every_environment_variable_is_a_setting() -> None:
    names = set(container_env()) | set(the("ConfigMap")["data"])
    compose_env = compose()["services"]["thumbproxy"]["environment"]
    names |= set(compose_env)
    unknown = sorted(names - SETTING_NAMES)
    assert not unknown, f"not settings of thumbproxy (see the README's table): {unknown}"
    for name, value in {**the("ConfigMap")["data"], **compose_env}.items():
        assert isinstance(value, str), f"{name}: environment values must be quoted strings, got {value!r}"


def test_service_autoscaler_disruption_budget_and_monitor_select_the_pods() -> None:
    labels = pod_labels()
    service = the("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] == "http"

    hpa = the("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": the("Deployment")["metadata"]["name"],
    }
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # The HPA owns the replica count; a count in the Deployment would reset it on every apply.
    assert "replicas" not in the("Deployment")["spec"]

    pdb = the("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    monitor = the("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [(service_port["name"], "/metrics")]


def test_ingress_hashes_by_request_uri_onto_the_service() -> None:
    ingress = the("Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$request_uri"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backends = [path["backend"]["service"] for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
    service = the("Service")
    assert backends == [{"name": service["metadata"]["name"], "port": {"name": service["spec"]["ports"][0]["name"]}}]


def test_prometheus_rule_holds_the_alerts_file() -> None:
    rule = the("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == load_yaml(ALERTS)[0]["groups"], (
        "deploy/kubernetes/prometheusrule.yaml and deploy/prometheus/alerts.yml differ; copy the groups over"
    )


# Docker --------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (instruction, arguments) with continuations joined."""
    logical = (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, arguments = line.strip().partition(" ")
        if instruction == "FROM":
            stages.append([])
        stages[-1].append((instruction, arguments.strip()))
    return stages


def test_image_runs_the_server_as_non_root_with_the_config_file() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    final = stages[-1]
    arguments = {instruction: [a for i, a in final if i == instruction] for instruction, _ in final}
    assert not any("build-essential" in a or "gcc" in a for a in arguments.get("RUN", []))
    assert arguments["USER"][-1].split(":")[0] not in ("root", "0")
    assert arguments["CMD"] == ['["thumbproxy", "serve"]']
    assert "/healthz" in arguments["HEALTHCHECK"][0]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(arguments["ENV"])))
    assert set(env) - {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"} <= SETTING_NAMES
    [copied] = [a.split()[-1] for a in arguments["COPY"] if a.startswith("config/thumbproxy.toml ")]
    assert env[CONFIG_ENV] == copied and copied.startswith("/etc/thumbproxy/")
    # The Deployment mounts its emptyDirs where the image keeps the cache and the downloads.
    assert env["THUMBPROXY_CACHE_DIR"] == setting_in_pod("THUMBPROXY_CACHE_DIR")
    assert env["TMP_DIR"] == setting_in_pod("TMP_DIR")


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)[0]


def test_compose_runs_thumbproxy_on_minio_with_prometheus_and_grafana() -> None:
    services = compose()["services"]
    assert {"thumbproxy", "minio", "prometheus", "grafana"} <= set(services)
    thumbproxy = services["thumbproxy"]
    build = thumbproxy["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == REPO / "Dockerfile"
    env = thumbproxy["environment"]
    assert re.fullmatch(r"http://minio:\d+", env["STORAGE_URL"])
    assert env["THUMBPROXY_S3_ADDRESSING_STYLE"] == "path"
    assert env["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    # The bucket is created by a one-shot service that thumbproxy waits for.
    [creator] = [name for name, service in services.items() if "mc mb" in json.dumps(service.get("command", ""))]
    assert thumbproxy["depends_on"][creator] == {"condition": "service_completed_successfully"}
    assert services[creator]["environment"]["BUCKET"] == env["AWS_BUCKET"]
    assert "$$BUCKET" in services[creator]["command"][0]
    # Longer than the service's own shutdown, which Docker's 10 s default is not.
    assert int(thumbproxy["stop_grace_period"].rstrip("s")) > (
        float(setting_in_compose("THUMBPROXY_DRAIN_SECONDS")) + float(setting_in_compose("THUMBPROXY_SHUTDOWN_TIMEOUT"))
    )


def test_compose_mounts_files_that_exist_where_prometheus_and_grafana_read_them() -> None:
    services = compose()["services"]
    mounts = {}
    for service in services.values():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), source
                mounts[target] = (COMPOSE.parent / source).resolve()
    assert mounts["/etc/prometheus"] == PROMETHEUS_CONFIG.parent
    # Prometheus scrapes thumbproxy by its compose name on the port it listens on.
    [job] = load_yaml(PROMETHEUS_CONFIG)[0]["scrape_configs"]
    port = setting_in_compose("THUMBPROXY_PORT")
    assert job["static_configs"] == [{"targets": [f"thumbproxy:{port}"]}]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # Grafana: the data source is the compose Prometheus; the dashboard is where the provider looks.
    [provider] = load_yaml(mounts["/etc/grafana/provisioning/dashboards"] / "thumbproxy.yml")[0]["providers"]
    dashboard_dir = provider["options"]["path"]
    assert mounts[f"{dashboard_dir}/thumbproxy.json"] == DASHBOARD
    [source] = load_yaml(mounts["/etc/grafana/provisioning/datasources"] / "prometheus.yml")[0]["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090" and source["isDefault"]


def setting_in_compose(name: str) -> str:
    return str(compose()["services"]["thumbproxy"]["environment"].get(name, DEFAULTS[name]()))


def test_alerts_dashboard_and_scrapes_agree_on_the_job() -> None:
    [job] = load_yaml(PROMETHEUS_CONFIG)[0]["scrape_configs"]
    # ServiceMonitor scrapes are labelled with the Service's name as their job.
    assert job["job_name"] == the("Service")["metadata"]["name"] == "thumbproxy"
    selected = set(re.findall(r'job="([^"]*)"', ALERTS.read_text()))
    assert selected == {job["job_name"]}


# Prometheus ----------------------------------------------------------------------------------


def test_promtool_accepts_the_rules() -> None:
    assert "SUCCESS" in run_promtool("check", "rules", ALERTS)


def test_promtool_accepts_the_config_and_the_rule_files_it_loads() -> None:
    # rule_files are relative to the config file, so the check runs on it where it is.
    output = run_promtool("check", "config", PROMETHEUS_CONFIG)
    assert "SUCCESS: 1 rule files found" in output


def alert_names() -> list[str]:
    return [rule["alert"] for group in load_yaml(ALERTS)[0]["groups"] for rule in group["rules"]]


def scenario(series: dict[str, str], minutes: int, firing: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    """A promtool test: these series (one sample a minute); at `minutes`, exactly `firing` fires."""
    return {
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "alert_rule_test": [
            {
                "eval_time": f"{minutes}m",
                "alertname": name,
                "exp_alerts": [{"exp_labels": labels} for labels in firing.get(name, [])],
            }
            for name in alert_names()
        ],
    }


def test_alerts_fire_on_trouble_and_stay_quiet_otherwise(tmp_path: Path) -> None:
    """The rules' expressions, `for:` and labels, on made-up series (annotations are checked by `check rules`)."""
    rules = load_yaml(ALERTS)[0]
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    job = 'job="thumbproxy", instance="a:8080"'
    up = {f"up{{{job}}}": "1x40", 'up{job="thumbproxy", instance="b:8080"}': "1x40"}
    requests = f'thumbproxy_requests_total{{{job}, route="/{{frame}}/"'
    archive = f'thumbproxy_archive_requests_total{{{job}, operation="frame"'
    s3 = f'thumbproxy_s3_requests_total{{{job}, operation="get"'
    render = f'thumbproxy_render_duration_seconds_bucket{{{job}, kind="mono"'

    def renders_within(bucket: str) -> dict[str, str]:
        return {
            f'{render}, le="{le}"}}': "0+10x40" if float(le) >= float(bucket) else "0x40"
            for le in ("0.25", "1", "2.5", "5", "+Inf")
        }

    healthy = {
        **up,
        f'{requests}, status="200"}}': "0+600x40",
        f'{requests}, status="404"}}': "0+60x40",
        f'{requests}, status="502"}}': "0+3x40",  # 0.5%: below the 5% threshold
        f'{archive}, status="200"}}': "0+300x40",
        f'{archive}, status="404"}}': "0+300x40",
        f'{s3}, result="ok"}}': "0+300x40",
        f'{s3}, result="miss"}}': "0+300x40",
        **renders_within("1"),
    }
    severity = {"critical": {"severity": "critical"}, "warning": {"severity": "warning"}}
    tests = [
        scenario(healthy, 30, {}),
        # 9% of requests answer 502, at about 1 request a second.
        scenario(
            {f'{requests}, status="200"}}': "0+60x40", f'{requests}, status="502"}}': "0+6x40", **up},
            20,
            {"ThumbproxyHigh5xxRatio": [severity["critical"]]},
        ),
        # The same ratio on a trickle of requests is not worth a page.
        scenario({f'{requests}, status="200"}}': "0+2x40", f'{requests}, status="502"}}': "0+2x40", **up}, 30, {}),
        # One replica stops answering scrapes; the other goes on.
        scenario(
            {f"up{{{job}}}": "1 1 1 0x30", 'up{job="thumbproxy", instance="b:8080"}': "1x33"},
            15,
            {"ThumbproxyReplicaDown": [{"severity": "warning", "job": "thumbproxy", "instance": "a:8080"}]},
        ),
        # No target answers at all.
        scenario(
            {f"up{{{job}}}": "0x30"},
            15,
            {
                "ThumbproxyReplicaDown": [{"severity": "warning", "job": "thumbproxy", "instance": "a:8080"}],
                "ThumbproxyDown": [severity["critical"]],
            },
        ),
        # No target at all, e.g. scrape discovery lost the pods.
        scenario({'up{job="other"}': "1x30"}, 15, {"ThumbproxyDown": [severity["critical"]]}),
        # Renders take 2.5 s to 5 s: the pool is saturated.
        scenario({**renders_within("5"), **up}, 30, {"ThumbproxyRenderLatencyHigh": [severity["warning"]]}),
        # 1 archive call in 6 times out.
        scenario(
            {f'{archive}, status="200"}}': "0+60x40", f'{archive}, status="timeout"}}': "0+12x40", **up},
            20,
            {"ThumbproxyArchiveErrors": [severity["warning"]]},
        ),
        # 404s are callers asking for frames that are not there (or not theirs): not an archive failure.
        scenario({f'{archive}, status="200"}}': "0+60x40", f'{archive}, status="404"}}': "0+60x40", **up}, 30, {}),
        scenario(
            {f'{s3}, result="ok"}}': "0+60x40", f'{s3}, result="error"}}': "0+6x40", **up},
            25,
            {"ThumbproxyS3Errors": [severity["warning"]]},
        ),
        # The archive throttles one replica's own calls for a day; the other's are taken.
        scenario(
            {
                f"thumbproxy_archive_throttled_seconds{{{job}}}": "86400-60x40",
                'thumbproxy_archive_throttled_seconds{job="thumbproxy", instance="b:8080"}': "0x40",
                **up,
            },
            10,
            {"ThumbproxyArchiveThrottled": [severity["warning"]]},
        ),
        # A 429 that passes within minutes is not worth a page.
        scenario({f"thumbproxy_archive_throttled_seconds{{{job}}}": "120 60 0x38", **up}, 10, {}),
    ]
    (tmp_path / "alerts_test.yml").write_text(
        yaml.safe_dump({"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests})
    )
    run_promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)


# The metrics the dashboard and the alerts name, against a running service ----------------------


def dashboard_panels() -> Iterator[dict[str, Any]]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    yield from walk(json.loads(DASHBOARD.read_text())["panels"])


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every query in the dashboard and the alerts."""
    found = [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
    ]
    for variable in json.loads(DASHBOARD.read_text())["templating"]["list"]:
        if variable["type"] == "query":
            found.append((f"variable {variable['name']!r}", variable["definition"]))
    for group in load_yaml(ALERTS)[0]["groups"]:
        found += [(f"alert {rule['alert']}", rule["expr"]) for rule in group["rules"]]
    return found


def test_dashboard_panels_use_the_datasource_variable_and_cover_every_area() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    assert {v["name"]: v["type"] for v in dashboard["templating"]["list"]}["datasource"] == "datasource"
    panels = [panel for panel in dashboard_panels() if panel["type"] != "row"]
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert METRIC_NAME.search(target["expr"]), f"{panel['title']}: no thumbproxy metric in {target['expr']}"
    exprs = " ".join(target["expr"] for panel in panels for target in panel["targets"])
    for needed in (
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "thumbproxy_request_duration_seconds_bucket",
        "thumbproxy_render_duration_seconds_bucket",
        "thumbproxy_archive_request_duration_seconds_bucket",
        "thumbproxy_cache_requests_total",
        "thumbproxy_coalesced_requests_total",
        "thumbproxy_renders_in_progress",
        "thumbproxy_render_queue_depth",
        "thumbproxy_s3_requests_total",
    ):
        assert needed in exprs, needed
    ids = [panel["id"] for panel in dashboard_panels()]
    assert len(ids) == len(set(ids))


def parse_exposition(text: str) -> tuple[dict[str, str], dict[str, list[dict[str, str]]]]:
    """Family types by name, and the label sets of the samples of each sample name."""
    types: dict[str, str] = {}
    samples: dict[str, list[dict[str, str]]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
        elif line and not line.startswith("#"):
            name, _, labels = line.partition("{")
            name = name.split()[0]
            pairs = re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels.rpartition("}")[0])
            samples.setdefault(name, []).append(dict(pairs))
    return types, samples


def series_names(types: dict[str, str]) -> dict[str, str]:
    """Every series name a query may use, with the family it belongs to."""
    suffixes = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum")}
    return {family + suffix: family for family, kind in types.items() for suffix in suffixes.get(kind, ("",))}


@pytest.fixture
async def scraped(
    start_service: ServiceFactory, fake_archive: FakeArchive, write_fits: Any, s3_server: Any, tmp_path: Path
) -> str:
    """/metrics of the service after a miss, a hit, a frame not found, a bad parameter and a failing S3."""
    service = await start_service(
        AWS_BUCKET=s3_server.bucket,
        STORAGE_URL=s3_server.endpoint_url,
        AWS_DEFAULT_REGION=s3_server.region,
        AWS_ACCESS_KEY_ID=s3_server.access_key,
        AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
        THUMBPROXY_S3_ADDRESSING_STYLE="path",
        THUMBPROXY_S3_TIMEOUT="2",
    )
    frame = fake_archive.add_frame(
        write_fits(tmp_path / "ogg0m404-kb82-20190321-0273-e91.fits.fz", shape=(64, 64), compressed=True)
    )
    for path, status in (
        (f"/{frame['id']}/?image=true", 200),  # miss: rendered
        (f"/{frame['id']}/?image=true", 200),  # hit
        ("/999999/", 404),
        (f"/{frame['id']}/?width=0", 400),
    ):
        response = await service.get(path)
        assert response.status == status, (path, await response.text())
    s3_server.stop()
    response = await service.get(f"/{frame['id']}/?image=true&width=50")
    assert response.status == 200, "a failing S3 must not fail a request"
    response = await service.get("/metrics")
    assert response.status == 200
    return await response.text()


async def test_every_metric_the_dashboard_and_alerts_name_is_exposed(scraped: str) -> None:
    types, _ = parse_exposition(scraped)
    exposed = series_names(types)
    missing = [
        f"{where}: {name}" for where, expr in queries() for name in METRIC_NAME.findall(expr) if name not in exposed
    ]
    assert not missing, (
        "metrics named in deploy/ that the service does not expose (misspelt, or a histogram "
        "used without _bucket/_count/_sum):\n  " + "\n  ".join(missing)
    )


async def test_labels_and_values_the_queries_select_on_are_exposed(scraped: str) -> None:
    """A matcher on a label the metric lacks, or an exact value it never takes, selects nothing."""
    _, samples = parse_exposition(scraped)
    problems = []
    for where, expr in queries():
        for name, matchers in re.findall(r"\b(thumbproxy_[a-z0-9_]+)\s*\{([^}]*)\}", expr):
            live = samples.get(name)
            if not live:
                continue  # exposed (checked above) but without a sample yet: its labels are unknown
            for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers):
                if label in TARGET_LABELS:
                    continue
                if not any(label in sample for sample in live):
                    problems.append(f"{where}: {name} has no label {label!r}")
                elif op == "=" and "$" not in value and not any(s.get(label) == value for s in live):
                    problems.append(f"{where}: {name} never has {label}={value!r}")
        for grouping in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            for label in filter(None, (part.strip() for part in grouping.split(","))):
                named = METRIC_NAME.findall(expr)
                if label not in TARGET_LABELS and not any(label in s for n in named for s in samples.get(n, [])):
                    problems.append(f"{where}: no metric in the query has the label {label!r} it groups by")
    assert not problems, "\n".join(problems)


async def test_alerts_and_dashboard_see_statuses_as_the_service_counts_them(scraped: str) -> None:
    """The 5xx and archive-error matchers assume numeric HTTP statuses; a frame not found is a 404 in both."""
    _, samples = parse_exposition(scraped)
    statuses = {s["status"] for s in samples["thumbproxy_requests_total"]}
    assert {"200", "400", "404"} <= statuses and all(re.fullmatch(r"\d{3}", s) for s in statuses), statuses
    archive = {s["status"] for s in samples["thumbproxy_archive_requests_total"]}
    assert "404" in archive, archive
    routes = {s["route"] for s in samples["thumbproxy_requests_total"]}
    assert not any(re.search(r"/\d+/", route) for route in routes), f"routes must be templates: {routes}"


async def test_the_probed_paths_answer(start_service: ServiceFactory) -> None:
    service = await start_service()
    for path in ("/healthz", "/readyz"):
        response = await service.get(path)
        assert response.status == 200, (path, await response.text())
        assert response.content_type == "application/json"
