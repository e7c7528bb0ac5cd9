#!/usr/bin/env bash
# Validates deploy/kubernetes against the Kubernetes OpenAPI schemas
# (kubernetes-validate from PyPI, strict: unknown fields are errors) and checks
# the Outpost configs inside the ConfigMaps with the real binaries'
# check-config, with every file the pods mount (TLS, secrets) supplied in a
# temporary directory. A mutated manifest must fail, so a validator that
# accepts everything cannot pass this script.
#
#   scripts/validate-k8s.sh [BIN_DIR]   (default target/debug; binaries must exist)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug}
venv=target/k8s-venv
KV_VERSION=1.37.0
VERSIONS=(1.29.0 1.31.0)

if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "kubernetes-validate==$KV_VERSION"
fi
kv="$venv/bin/kubernetes-validate"

for v in "${VERSIONS[@]}"; do
  "$kv" --strict --quiet -k "$v" deploy/kubernetes/*.yaml
  echo "deploy/kubernetes: valid against Kubernetes $v (strict)"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The validator must reject a manifest with an unknown field and a wrong type.
sed 's/^  serviceName: outpost-controller$/  serviceName: outpost-controller\n  replicaz: 1/' \
  deploy/kubernetes/controller.yaml >"$work/bad1.yaml"
sed 's/^  replicas: 1$/  replicas: "one"/' deploy/kubernetes/controller.yaml >"$work/bad2.yaml"
for bad in "$work/bad1.yaml" "$work/bad2.yaml"; do
  cmp -s "$bad" deploy/kubernetes/controller.yaml && { echo "mutation did not apply to $bad" >&2; exit 1; }
  if "$kv" --strict --quiet -k "${VERSIONS[-1]}" "$bad" >/dev/null 2>&1; then
    echo "kubernetes-validate accepted a broken manifest ($bad)" >&2; exit 1
  fi
done
echo "kubernetes-validate rejects broken manifests (unknown field, wrong type)"

# The configs in the ConfigMaps, checked by the binaries with what the pods mount.
"$venv/bin/python" - "$work" <<'PY'
import sys, yaml, pathlib
work = pathlib.Path(sys.argv[1])
for name in ["controller", "probe-eu-west"]:
    for doc in yaml.safe_load_all(open(f"deploy/kubernetes/{name}.yaml")):
        if doc and doc["kind"] == "ConfigMap":
            for key, text in doc["data"].items():
                (work / key).write_text(text.replace("/etc/outpost/", f"{work}/etc/"))
        if doc and doc["kind"] == "Secret":
            (work / "secret-keys").write_text("\n".join(doc["stringData"]) + "\n")
PY
mkdir -p "$work/etc/tls" "$work/etc/secrets"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=outpost-controller.outpost.svc -addext subjectAltName=DNS:outpost-controller.outpost.svc \
  -keyout "$work/etc/tls/tls.key" -out "$work/etc/tls/tls.crt" 2>/dev/null
cp "$work/etc/tls/tls.crt" "$work/etc/tls/ca.crt"
while read -r key; do
  head -c 48 /dev/urandom | base64 | tr -d '/+=' | head -c 40 >"$work/etc/secrets/$key"
done <"$work/secret-keys"
"$bin/outpost-controller" check-config "$work/controller.toml"
"$bin/outpost-probe" check-config "$work/probe.toml"

# The shipped placeholders must be refused (too short for a token), so an
# unedited Secret cannot run.
printf 'replace-me' >"$work/etc/secrets/probe-eu-west-1"
if "$bin/outpost-controller" check-config "$work/controller.toml" >/dev/null 2>&1; then
  echo "the controller accepted the placeholder probe token" >&2; exit 1
fi
echo "deploy/kubernetes: configs pass check-config; placeholder secrets are refused"
