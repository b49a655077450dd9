"""An in-cluster client of the PyPI `kubernetes` library, for tests/rbac.rs.

Usage: python py_rbac.py TOKEN_DIR NAMESPACE
with KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT set, and TOKEN_DIR holding `token`
and `ca.crt` (a projected volume as the node agent writes it).

Loads the library's in-cluster config (the code behind `load_incluster_config()`, pointed at
TOKEN_DIR), then lists the ConfigMaps and then the Secrets of NAMESPACE with the generated
CoreV1Api, printing one line per call:
  <resource> ok <item count>   |   <resource> status <HTTP status> <reason>
"""

import os
import sys

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.config import incluster_config


def main():
    token_dir, namespace = sys.argv[1], sys.argv[2]
    incluster_config.InClusterConfigLoader(
        token_filename=os.path.join(token_dir, "token"),
        cert_filename=os.path.join(token_dir, "ca.crt"),
    ).load_and_set()
    core = client.CoreV1Api()
    calls = [
        ("configmaps", core.list_namespaced_config_map),
        ("secrets", core.list_namespaced_secret),
    ]
    for resource, call in calls:
        try:
            items = call(namespace).items
            print(f"{resource} ok {len(items)}", flush=True)
        except ApiException as e:
            print(f"{resource} status {e.status} {e.reason}", flush=True)


if __name__ == "__main__":
    main()
