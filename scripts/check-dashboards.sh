#!/usr/bin/env bash
# Checks what dashboards/ and deploy/ promise, offline (CTest: "dashboards:
# promtool check and test rules"; the same files against a real Prometheus
# and daemon: tests/integration/prometheus_test.cpp):
#  - dashboards/alerts.yml loads (promtool check rules) and its unit tests
#    pass (promtool test rules dashboards/*.test.yml);
#  - deploy/prometheus.yml is a valid Prometheus config;
#  - dashboards/driftwatch.json is JSON, every panel target has an expr, and
#    every expr (and annotation query) parses as PromQL once the Grafana
#    variables are replaced as the integration test replaces them, and it
#    imports as it is: its one __inputs entry is the Prometheus data source
#    DS_PROMETHEUS, and every panel, target and variable uses it.
# Exits 77 (CTest: skipped) when promtool or python3 is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in promtool python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "check-dashboards: skipped: $tool not found (scripts/install-deps.sh installs it)" >&2
    exit 77
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== promtool check rules dashboards/alerts.yml"
promtool check rules dashboards/alerts.yml

echo "== promtool test rules dashboards/*.test.yml"
promtool test rules dashboards/*.test.yml

echo "== promtool check config deploy/prometheus.yml"
promtool check config deploy/prometheus.yml

echo "== dashboards/driftwatch.json"
# Writes every query of the dashboard into a rule file as a recording rule,
# so that promtool's PromQL parser checks it.
python3 - dashboards/driftwatch.json "$work/dashboard-queries.yml" <<'PY'
import json
import sys

path, rules_out = sys.argv[1], sys.argv[2]
errors = []
try:
    with open(path) as f:
        dashboard = json.load(f)
except (OSError, ValueError) as e:
    sys.exit(f"check-dashboards: {path} is not JSON: {e}")

# As in tests/integration/prometheus_test.cpp.
SUBSTITUTIONS = [("$__rate_interval", "1m"), ("$__interval", "1m"), ("$__range", "5m"),
                 ("$node", ".*"), ("$sandbox", ".*")]

def substituted(expr):
    for variable, value in SUBSTITUTIONS:
        expr = expr.replace(variable, value)
    return expr

variables = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
for needed in ("node", "sandbox"):
    if needed not in variables:
        errors.append(f"templating has no variable '{needed}'")

# Importable as it is (Grafana "Import dashboard"): the data source is the
# import's one input, DS_PROMETHEUS, and every Prometheus data source
# reference in the file (panels, their targets, the variables' queries) is
# that input, so the import dialog asks for it and nothing points at a data
# source uid of the machine the dashboard was made on.
INPUT = "${DS_PROMETHEUS}"
inputs = [i for i in dashboard.get("__inputs", []) if isinstance(i, dict)]
if not any(i.get("name") == "DS_PROMETHEUS" and i.get("type") == "datasource"
           and i.get("pluginId") == "prometheus" for i in inputs):
    errors.append("__inputs has no DS_PROMETHEUS datasource input (pluginId prometheus)")
for i in inputs:
    if i.get("name") != "DS_PROMETHEUS":
        errors.append(f"__inputs: unexpected input {i.get('name')!r}: the import would ask for it")

def datasource_refs(node, where):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield where, value
            yield from datasource_refs(value, where + "." + key)
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from datasource_refs(value, f"{where}[{n}]")

for where, ref in datasource_refs({k: v for k, v in dashboard.items() if k != "annotations"}, "$"):
    if not (isinstance(ref, dict) and ref.get("type") == "prometheus" and ref.get("uid") == INPUT):
        errors.append(f"{where}: datasource {json.dumps(ref)} is not the {INPUT} input")

def all_panels(panels):
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))

queries = []
ids = set()
for panel in all_panels(dashboard.get("panels", [])):
    title = panel.get("title", "<untitled>")
    if panel.get("id") in ids:
        errors.append(f"panel '{title}': duplicate id {panel.get('id')}")
    ids.add(panel.get("id"))
    if panel.get("type") == "row":
        continue
    targets = panel.get("targets") or []
    if not targets:
        errors.append(f"panel '{title}' has no targets")
    for target in targets:
        expr = target.get("expr", "")
        if not isinstance(expr, str) or not expr.strip():
            errors.append(f"panel '{title}' target {target.get('refId')} has no expr")
            continue
        queries.append((f"panel '{title}' target {target.get('refId')}", expr))
    if panel.get("datasource", {}).get("uid") != INPUT:
        errors.append(f"panel '{title}' does not use the {INPUT} input")
for annotation in dashboard.get("annotations", {}).get("list", []):
    if annotation.get("expr"):
        queries.append((f"annotation '{annotation.get('name')}'", annotation["expr"]))

if errors:
    sys.exit("check-dashboards: " + path + ":\n  " + "\n  ".join(errors))

with open(rules_out, "w") as out:
    out.write("groups:\n  - name: dashboard-queries\n    rules:\n")
    for n, (where, expr) in enumerate(queries):
        # YAML accepts JSON strings: no escaping to get wrong.
        out.write(f"      # {where}\n")
        out.write(f"      - record: dashboard:query_{n}\n")
        out.write(f"        expr: {json.dumps(substituted(expr))}\n")
print(f"{path}: {len(queries)} queries in {len(ids)} panels")
PY
promtool check rules --lint=none "$work/dashboard-queries.yml"

echo "check-dashboards: all checks passed"
