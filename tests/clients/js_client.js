// An in-cluster client of npm `@kubernetes/client-node`, for tests/clients.rs.
//
// Usage: node js_client.js LIB_DIR PATH_PREFIX SECONDS
// with KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT set. LIB_DIR is an npm dir holding
// node_modules/@kubernetes/client-node; PATH_PREFIX is what the library's
// `KubeConfig.loadFromCluster(pathPrefix)` puts before
// /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt} (so a test points it at a
// projected volume without root paths).
//
// About once a second it creates a SelfSubjectReview (authentication.k8s.io/v1, which any
// authenticated user may create, so a 201 proves the token was accepted) and prints one line
// per call:  ok <status> <username>  |  fail <status>  |  error <message>
// Stops after SECONDS. The first line names the library version.
//
// 1.x (ESM, promise API with parameter objects): the generated
// AuthenticationV1Api.createSelfSubjectReviewWithHttpInfo; its token-file auth re-reads the
// file when it is more than a minute old. 0.10.2 (CommonJS, `request`-based) has no
// SelfSubjectReview API, so the POST goes through `request` with `kc.applyToRequest`, which
// is what its generated APIs do; it read the token once, in loadFromCluster.
'use strict';

const path = require('path');
const { createRequire } = require('module');
const { pathToFileURL } = require('url');

const PATH = '/apis/authentication.k8s.io/v1/selfsubjectreviews';
const BODY = { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// 1.x: one call through the generated API; returns [status, username].
async function reviewNew(k8s, kc) {
  const api = kc.makeApiClient(k8s.AuthenticationV1Api);
  const info = await api.createSelfSubjectReviewWithHttpInfo({ body: BODY });
  return [info.httpStatusCode, info.data.status.userInfo.username];
}

// 0.10.x: one call through `request`, set up by the KubeConfig as the library's APIs do.
function reviewOld(request, kc) {
  const opts = { method: 'POST', uri: kc.getCurrentCluster().server + PATH, json: true, body: BODY };
  kc.applyToRequest(opts);
  return new Promise((resolve, reject) => {
    request(opts, (err, resp, body) => {
      if (err) return reject(err);
      if (resp.statusCode >= 300) return resolve([resp.statusCode, null]);
      return resolve([resp.statusCode, body.status.userInfo.username]);
    });
  });
}

async function main() {
  const [libDir, prefix, seconds] = process.argv.slice(2);
  const pkgDir = path.join(libDir, 'node_modules', '@kubernetes', 'client-node');
  const version = require(path.join(pkgDir, 'package.json')).version;
  const mod = await import(pathToFileURL(path.join(pkgDir, 'dist', 'index.js')).href);
  const k8s = mod.KubeConfig ? mod : mod.default;
  const kc = new k8s.KubeConfig();
  kc.loadFromCluster(prefix);
  const isNew = typeof k8s.AuthenticationV1Api.prototype.createSelfSubjectReviewWithHttpInfo === 'function';
  const request = isNew ? null : createRequire(path.join(libDir, 'package.json'))('request');
  console.log(`library @kubernetes/client-node ${version} api ${isNew ? 'generated' : 'request'}`);
  const deadline = Date.now() + Number(seconds) * 1000;
  while (Date.now() < deadline) {
    const started = Date.now();
    try {
      const [status, user] = isNew ? await reviewNew(k8s, kc) : await reviewOld(request, kc);
      console.log(status < 300 ? `ok ${status} ${user}` : `fail ${status}`);
    } catch (e) {
      // 1.x throws ApiException (with .code) for non-2xx answers.
      if (e && typeof e.code === 'number') console.log(`fail ${e.code}`);
      else console.log(`error ${String((e && e.message) || e).split('\n')[0]}`);
    }
    await sleep(Math.max(0, 1000 - (Date.now() - started)));
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
