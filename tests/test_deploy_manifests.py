"""Production assets under deploy/: the Helm chart, the ClickHouse DDL doc and the Grafana dashboards
reference only things that exist (values, settings names, CLI commands, tables, columns, metrics).

The chart is rendered with Helm's own engine (Helm v4 through `helm-python-sdk`) when that package
is installed; the structural checks on the template text run everywhere.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.settings import Settings
from stream.store.client import MIGRATIONS

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "driftline"
GRAFANA = ROOT / "deploy" / "grafana"
TEMPLATES = sorted(p for p in (CHART / "templates").iterdir() if p.suffix in (".yaml", ".tpl"))
VALUES_REF = re.compile(r"\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def _settings_env_names() -> set[str]:
    # settings.py, and connections.py for the secured-connection settings it reads through
    trees = [ast.parse((ROOT / "stream" / name).read_text()) for name in ("settings.py", "connections.py")]
    return {n.value for tree in trees for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith("DRIFTLINE_")}


def _values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def missing_value_refs(template_text: str, values: dict[str, Any]) -> set[str]:
    """`.Values.a.b` paths used in a template that values.yaml does not define."""
    missing = set()
    for match in VALUES_REF.finditer(template_text):
        node: Any = values
        for part in match.group(1).strip(".").split("."):
            if not isinstance(node, dict) or part not in node:
                missing.add(match.group(1))
                break
            node = node[part]
    return missing


# ------------------------------------------------------------------------------------ chart text
def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "driftline"
    assert re.match(r"^\d+\.\d+\.\d+$", chart["version"])
    assert chart["appVersion"]
    assert {p.name for p in TEMPLATES} >= {"_helpers.tpl", "worker-deployment.yaml", "api-deployment.yaml",
                                           "api-service.yaml", "secret.yaml"}


def test_values_cover_the_operator_knobs() -> None:
    values = _values()
    assert values["image"]["repository"] and "tag" in values["image"]
    assert values["kafka"]["bootstrap"] and values["kafka"]["topicPrefix"] and values["kafka"]["partitions"] >= 1
    assert values["clickhouse"]["url"].startswith("http")
    assert values["worker"]["replicas"] >= 1 and values["worker"]["webPort"] == 6066
    for part in ("worker", "api"):
        assert {"requests", "limits"} <= set(values[part]["resources"])


def test_every_values_reference_exists() -> None:
    values = _values()
    seen = 0
    for template in [*TEMPLATES, CHART / "templates" / "NOTES.txt"]:
        text = template.read_text()
        seen += len(VALUES_REF.findall(text))
        assert missing_value_refs(text, values) == set(), template.name
    assert seen > 30


def test_the_values_checker_catches_a_typo() -> None:
    values = _values()
    assert missing_value_refs("{{ .Values.worker.replica }} {{ $.Values.kafka.bootstrap }}", values) == \
        {".worker.replica"}
    assert missing_value_refs("{{ .Values.kafka.bootstrap.host }}", values) == {".kafka.bootstrap.host"}


def test_templates_set_only_the_settings_the_code_reads() -> None:
    read = _settings_env_names()
    used = set()
    for template in TEMPLATES:
        used |= set(re.findall(r"\bDRIFTLINE_[A-Z_]+\b", template.read_text()))
    assert used <= read, f"templates set names Settings.from_env never reads: {used - read}"
    assert {"DRIFTLINE_KAFKA_BOOTSTRAP", "DRIFTLINE_CLICKHOUSE_URL", "DRIFTLINE_TOPIC_PREFIX",
            "DRIFTLINE_PARTITIONS", "DRIFTLINE_WORKER_WEB_PORT"} <= used


def test_templates_declare_kinds_and_run_real_commands() -> None:
    from typer.main import get_command

    from stream.cli.main import app

    kinds = {}
    for template in TEMPLATES:
        if template.suffix == ".tpl":
            continue
        text = template.read_text()
        assert re.search(r"^apiVersion: \S+$", text, re.M), template.name
        kind = re.search(r"^kind: (\w+)$", text, re.M)
        assert kind, template.name
        kinds[template.name] = kind.group(1)
    assert sorted(kinds.values()).count("Deployment") == 2
    assert {"Service", "Secret"} <= set(kinds.values())
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for template in TEMPLATES:
        for command in re.findall(r'command: \["driftline", "(\w+)"', template.read_text()):
            assert command in commands, f"{template.name} runs unknown command {command}"


# ------------------------------------------------------------------------------------ rendered by Helm
def _render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    import helm_python.chart as helm_chart
    with helm_chart.Chart.load(CHART) as chart:
        manifests = chart.render(values, name="prod", namespace="monitoring")
    docs = []
    for path, text in manifests.items():
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _container_env(deployment: dict[str, Any], secret_value: str) -> dict[str, str]:
    env = {}
    for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        env[item["name"]] = item.get("value", secret_value)
    return env


def test_helm_renders_worker_api_service_and_secret() -> None:
    docs = _render()
    deployments = _by_kind(docs, "Deployment")
    assert set(deployments) == {"prod-driftline-worker", "prod-driftline-api"}
    secret = _by_kind(docs, "Secret")["prod-driftline-clickhouse"]
    url = secret["stringData"]["clickhouse-url"]
    service = _by_kind(docs, "Service")["prod-driftline-api"]
    worker, api = deployments["prod-driftline-worker"], deployments["prod-driftline-api"]

    assert worker["spec"]["replicas"] == _values()["worker"]["replicas"]
    for deployment in (worker, api):
        pod = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        container = pod["spec"]["containers"][0]
        assert container["resources"]["requests"] and container["resources"]["limits"]
        ref = next(e for e in container["env"] if e["name"] == "DRIFTLINE_CLICKHOUSE_URL")["valueFrom"]
        assert ref["secretKeyRef"] == {"name": "prod-driftline-clickhouse", "key": "clickhouse-url"}
        env = _container_env(deployment, url)
        assert set(env) <= _settings_env_names()
        settings = Settings.from_env(env)
        assert settings.bootstrap_servers == "kafka:9092"
        assert settings.clickhouse_url == url
        assert settings.topic("events") == "driftline-events"
        assert settings.partitions == 8

    pod = worker["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["command"][:2] == ["driftline", "worker"]
    port = next(p for p in container["ports"] if p["name"] == "metrics")["containerPort"]
    assert port == 6066 == Settings.from_env(_container_env(worker, url)).worker_web_port
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "6066"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}

    assert api["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["driftline", "api"]
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_helm_values_scale_workers_and_use_an_existing_secret() -> None:
    docs = _render({"worker": {"replicas": 6}, "clickhouse": {"existingSecret": "ch-creds", "existingSecretKey": "u"},
                    "kafka": {"bootstrap": "k1:9092,k2:9092", "topicPrefix": "prod-", "partitions": 12}})
    assert _by_kind(docs, "Secret") == {}
    worker = _by_kind(docs, "Deployment")["prod-driftline-worker"]
    assert worker["spec"]["replicas"] == 6
    env = worker["spec"]["template"]["spec"]["containers"][0]["env"]
    ref = next(e for e in env if e["name"] == "DRIFTLINE_CLICKHOUSE_URL")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "ch-creds", "key": "u"}
    settings = Settings.from_env(_container_env(worker, "http://u:p@ch:8123/db"))
    assert (settings.bootstrap_servers, settings.topic("dlq"), settings.partitions) == \
        ("k1:9092,k2:9092", "prod-dlq", 12)


def test_helm_refuses_bad_values_and_lints_clean() -> None:
    import helm_python as helm
    with pytest.raises(helm.HelmRenderError, match="unknownModels"):
        _render({"unknownModels": "drop"})
    report = helm.chart.lint(CHART, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] > 1] == []


# ------------------------------------------------------------------------------------ ClickHouse DDL doc
def _dump_ddl_module() -> Any:
    spec = importlib.util.spec_from_file_location("dump_ddl", ROOT / "deploy" / "clickhouse" / "dump_ddl.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_clickhouse_readme_is_in_sync_with_migrations() -> None:
    dump = _dump_ddl_module()
    ddl = dump.render_ddl()
    for _, statements in MIGRATIONS:
        for statement in statements:
            table = re.search(r"\{db\}\.(\w+)", statement)
            assert table and f"driftline.{table.group(1)}" in ddl
    readme = (ROOT / "deploy" / "clickhouse" / "README.md").read_text()
    assert dump.readme_block(ddl) in readme, "run: python deploy/clickhouse/dump_ddl.py --write"
    # The generator notices drift: a changed migration no longer matches the README.
    assert dump.readme_block(ddl.replace("row_count UInt64", "row_count UInt32")) not in readme


# ------------------------------------------------------------------------------------ Grafana
def _schema() -> dict[str, set[str]]:
    """Table → columns, from the CREATE TABLE and ALTER TABLE … ADD COLUMN statements of MIGRATIONS."""
    tables: dict[str, set[str]] = {}
    for _, statements in MIGRATIONS:
        for statement in statements:
            added = re.match(r"ALTER TABLE \{db\}\.(\w+) ADD COLUMN IF NOT EXISTS (\w+) ", statement)
            if added:
                tables[added.group(1)].add(added.group(2))
                continue
            match = re.search(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+) \((.*)\)\s*ENGINE", statement, re.S)
            assert match, statement[:80]
            body = re.sub(r"\([^()]*(\([^()]*\))?[^()]*\)", "", match.group(2))  # drop type arguments
            tables[match.group(1)] = {c.strip().split()[0] for c in body.split(",") if c.strip()}
    return tables


def _metric_names() -> set[str]:
    """Metric names defined with prometheus_client in stream/ and api/ (Counter(...) etc.)."""
    names: set[str] = set()
    pattern = re.compile(r"(Counter|Gauge|Histogram|Summary)\(\s*[\"'](\w+)[\"']")
    for path in list((ROOT / "stream").rglob("*.py")) + list((ROOT / "api").rglob("*.py")):
        for kind, name in pattern.findall(path.read_text()):
            names.add(name)
            if kind == "Histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "Counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
    return names


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])
    return out


def _load(name: str) -> dict[str, Any]:
    return json.loads((GRAFANA / name).read_text())


def _check_model(dashboard: dict[str, Any], plugin: str) -> list[dict[str, Any]]:
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds_vars = [v for v in variables.values() if v["type"] == "datasource"]
    assert len(ds_vars) == 1 and ds_vars[0]["query"] == plugin
    ds_ref = {"type": plugin, "uid": "${" + ds_vars[0]["name"] + "}"}
    panel_ids = [p["id"] for p in _panels(dashboard)]
    assert len(panel_ids) == len(set(panel_ids)), "duplicate panel ids"
    targets = []
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["gridPos"]["w"] > 0
        assert panel["datasource"] == ds_ref, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == ds_ref and target["refId"]
            targets.append(target)
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == ds_ref
            targets.append({"rawSql": variable["query"], "expr": variable["query"]})
    return targets


SQL_KEYWORDS = {"select", "from", "where", "group", "by", "order", "as", "and", "or", "in", "not", "final", "limit",
                "desc", "asc", "array", "join", "having", "distinct", "with", "case", "when", "then", "else", "end",
                "is", "null", "like", "between", "interval", "settings", "over", "partition", "on", "using"}


def sql_problems(sql: str, schema: dict[str, set[str]]) -> list[str]:
    """Tables or identifiers of a dashboard query that the schema does not have."""
    tables = re.findall(r"\bFROM\s+\$\{database\}\.(\w+)", sql, re.I)
    if not tables:
        return ["no FROM ${database}.<table>"]
    problems = [f"unqualified FROM in {sql}"] if re.search(r"\bFROM\s+(?!\$\{database\}\.|\()", sql, re.I) else []
    problems += [f"unknown table {t}" for t in tables if t not in schema]
    columns = set().union(*(schema.get(t, set()) for t in tables))
    stripped = re.sub(r"'[^']*'|\$\{[^}]*\}|\$__\w+|\$\w+", " ", sql)
    aliases = set(re.findall(r"\bAS\s+(\w+)", stripped, re.I))
    functions = set(re.findall(r"\b(\w+)\s*\(", stripped))
    for word in re.findall(r"\b[A-Za-z_]\w*\b", stripped):
        if word.lower() in SQL_KEYWORDS or word in functions or word in aliases or word in schema:
            continue
        if word not in columns:
            problems.append(f"{word!r} is not a column of {tables}")
    return problems


def _clickhouse_targets() -> list[dict[str, Any]]:
    return _check_model(_load("driftline-clickhouse.json"), "grafana-clickhouse-datasource")


def test_clickhouse_dashboard_queries_existing_tables_and_columns() -> None:
    schema = _schema()
    used_tables = set()
    for target in _clickhouse_targets():
        assert sql_problems(target["rawSql"], schema) == [], target["rawSql"]
        used_tables |= set(re.findall(r"\$\{database\}\.(\w+)", target["rawSql"]))
    assert {"profiles", "column_summaries", "anomaly_log", "dead_letters"} <= used_tables


def test_the_sql_checker_catches_unknown_tables_and_columns() -> None:
    schema = _schema()
    assert sql_problems("SELECT sum(row_count) AS n FROM ${database}.profiles FINAL", schema) == []
    assert sql_problems("SELECT sum(rows) AS n FROM ${database}.profiles", schema) == ["'rows' is not a column of "
                                                                                       "['profiles']"]
    assert "unknown table profile" in sql_problems("SELECT 1 AS x FROM ${database}.profile", schema)
    assert sql_problems("SELECT 1 AS x FROM profiles", schema)


def _as_clickhouse(sql: str, database: str) -> str:
    """A dashboard query with the Grafana macros and variables the plugin would substitute."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"(\1 >= now64(3) - INTERVAL 1 DAY AND \1 <= now64(3))", sql)
    sql = re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(\1, INTERVAL 60 second)", sql)
    for name, value in {"database": database, "model:singlequote": "'house-price'", "granularity": "hourly",
                        "column:singlequote": "'in.sqft'"}.items():
        sql = sql.replace("${" + name + "}", value)
    assert "$" not in sql, sql
    return sql


@pytest.mark.integration
def test_clickhouse_dashboard_queries_run_on_clickhouse(store: Any) -> None:
    """Every panel and variable query parses and runs on a real ClickHouse server over the migrated schema."""
    now = datetime.now(UTC)
    store.insert("anomaly_log", [["house-price", now, "e1", "v1", "", 2, ["a", "b"], "{}", "t", 0, 1, 0, 1, now]],
                 ["model", "event_time", "event_id", "model_version", "segment", "anomaly_count", "failed",
                  "event_values", "source_topic", "source_partition", "source_offset", "source_index",
                  "config_version", "inserted_at"])
    results = {}
    for target in _clickhouse_targets():
        results[target["rawSql"]] = store.query_rows(_as_clickhouse(target["rawSql"], store.database))
    failures = next(rows for sql, rows in results.items() if "GROUP BY validation\n" in sql)
    assert sorted(failures) == [("a", 1), ("b", 1)]


def test_prometheus_dashboard_uses_only_defined_metrics() -> None:
    defined = _metric_names()
    assert "driftline_events_consumed_total" in defined and "driftline_flush_seconds_bucket" in defined
    targets = _check_model(_load("driftline-prometheus.json"), "prometheus")
    used = set()
    promql_words = {"sum", "rate", "irate", "increase", "by", "without", "histogram_quantile", "le", "max", "min",
                    "avg", "count", "topk", "label_values", "on", "ignoring", "group_left", "clamp_min", "or",
                    "and", "unless", "vector", "deriv", "delta", "time", "offset"}
    for target in targets:
        # drop label matchers, strings, ranges, variables and grouping label lists: what stays are
        # functions, keywords and metric names
        expr = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]|\$\w+|\b(?:by|without|on|ignoring)\s*\([^)]*\)', " ",
                      target["expr"])
        for word in re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr):
            if word in promql_words or word in ("model", "reason", "table", "instance", "job", "pod"):
                continue
            assert word in defined, f"metric {word!r} is not defined in stream/ or api/: {target['expr']}"
            used.add(word)
    assert {"driftline_events_consumed_total", "driftline_events_rejected_total", "driftline_open_windows",
            "driftline_flush_seconds_bucket", "driftline_store_errors_total"} <= used
