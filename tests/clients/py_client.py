"""An in-cluster client of the PyPI `kubernetes` library, for tests/clients.rs.

Usage: python py_client.py TOKEN_DIR SECONDS
with KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT set, and TOKEN_DIR holding `token`
and `ca.crt` (a projected volume as the node agent writes it).

Loads the library's in-cluster config (`InClusterConfigLoader`, the code behind
`load_incluster_config()`, pointed at TOKEN_DIR instead of /var/run/secrets/...), then about
once a second creates a SelfSubjectReview (authentication.k8s.io/v1, which any authenticated
user may create, so a 201 proves the token was accepted) and prints one line per call:
  ok <status> <username>   |   fail <status>   |   error <exception type>
Stops after SECONDS. The first line names the library version and the User-Agent it sends.

Works with 11.0.0 (no SelfSubjectReview model, so a raw POST through the library's own
ApiClient.call_api; reads the token once) and >= 12 (the generated
AuthenticationV1Api.create_self_subject_review; re-reads the token file once a minute).
"""

import os
import sys
import time

import kubernetes
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.config import incluster_config

PATH = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
BODY = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


def review(api):
    """One SelfSubjectReview: (HTTP status, username)."""
    if hasattr(client, "V1SelfSubjectReview"):
        auth = client.AuthenticationV1Api(api)
        body = client.V1SelfSubjectReview()
        data, status, _ = auth.create_self_subject_review_with_http_info(body)
        return status, data.status.user_info.username
    data, status, _ = api.call_api(
        PATH,
        "POST",
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body=BODY,
        auth_settings=["BearerToken"],
        response_type="object",
        _return_http_data_only=False,
    )
    return status, data["status"]["userInfo"]["username"]


def main():
    token_dir, seconds = sys.argv[1], float(sys.argv[2])
    loader = incluster_config.InClusterConfigLoader(
        token_filename=os.path.join(token_dir, "token"),
        cert_filename=os.path.join(token_dir, "ca.crt"),
    )
    # 11.0.0: load_and_set() sets the default Configuration; >= 12 does the same when
    # called without one (and installs the token-file refresh hook on it).
    loader.load_and_set()
    api = client.ApiClient()
    print(f"library kubernetes {kubernetes.__version__} user-agent {api.user_agent}", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            status, user = review(api)
            print(f"ok {status} {user}", flush=True)
        except ApiException as e:
            print(f"fail {e.status}", flush=True)
        except Exception as e:  # connection refused while the server restarts, ...
            print(f"error {type(e).__name__}", flush=True)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
