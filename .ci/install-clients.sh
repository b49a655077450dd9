#!/usr/bin/env bash
# Installs the real Kubernetes client libraries that tests/clients.rs drives, into a cache
# dir outside the repo (default $HOME/.cache/tokenwarden-clients, or $TOKENWARDEN_CLIENTS_DIR):
#   py-latest/    venv, PyPI `kubernetes` (latest: reloads its token file, >= 12.0.0)
#   py-11.0.0/    venv, PyPI `kubernetes==11.0.0` (reads its token once)
#   node-1.4.0/   npm `@kubernetes/client-node@1.4.0` (reloads; 2.x needs Node >= 22)
#   node-0.10.2/  npm `@kubernetes/client-node@0.10.2` (reads its token once)
# Idempotent: a client whose `ok` marker exists is skipped. Fails loudly on any error.
set -euo pipefail

DIR="${TOKENWARDEN_CLIENTS_DIR:-$HOME/.cache/tokenwarden-clients}"
mkdir -p "$DIR"
start=$(date +%s)

for tool in python3 node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "FATAL: $tool is missing" >&2; exit 1; }
done

# python_env NAME PIP_ARGS...: a venv with the given requirements, then an import check.
python_env() {
  local name=$1; shift
  local env="$DIR/$name"
  if [ -f "$env/ok" ]; then
    echo "clients: $name already installed ($(cat "$env/ok"))"
    return
  fi
  echo "clients: installing $name: pip install $*"
  rm -rf "$env"
  python3 -m venv "$env"
  "$env/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  local version
  version=$("$env/bin/python" -c \
    'import kubernetes, kubernetes.config, kubernetes.client; print(kubernetes.__version__)')
  echo "kubernetes $version (python $("$env/bin/python" -c 'import platform; print(platform.python_version())'))" >"$env/ok"
  echo "clients: $name ready: $(cat "$env/ok")"
}

# node_env NAME PACKAGE@VERSION: an npm dir with the package, then a load check.
node_env() {
  local name=$1 pkg=$2
  local env="$DIR/$name"
  if [ -f "$env/ok" ]; then
    echo "clients: $name already installed ($(cat "$env/ok"))"
    return
  fi
  echo "clients: installing $name: npm install $pkg"
  rm -rf "$env"
  mkdir -p "$env"
  (cd "$env" && echo '{"name":"tokenwarden-client-env","private":true}' >package.json &&
    npm install --no-audit --no-fund --loglevel=error "$pkg")
  local main="$env/node_modules/@kubernetes/client-node/dist/index.js"
  node -e 'import(require("url").pathToFileURL(process.argv[1])).then(m => {
      if (!(m.KubeConfig || (m.default && m.default.KubeConfig))) throw new Error("no KubeConfig");
    })' "$main"
  local version
  version=$(node -p 'require(process.argv[1]).version' "$env/node_modules/@kubernetes/client-node/package.json")
  echo "@kubernetes/client-node $version (node $(node -v))" >"$env/ok"
  echo "clients: $name ready: $(cat "$env/ok")"
}

python_env py-latest kubernetes
# 11.0.0 predates urllib3 2 (its RESTResponse calls HTTPResponse.getheaders(), gone in 2.x).
python_env py-11.0.0 kubernetes==11.0.0 'urllib3<2'
node_env node-1.4.0 @kubernetes/client-node@1.4.0
node_env node-0.10.2 @kubernetes/client-node@0.10.2

echo "clients: all installed in $DIR ($(($(date +%s) - start)) s)"
