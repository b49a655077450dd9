//! The agent's Node: created if missing (labels `kubernetes.io/hostname` and `kubernetes.io/os`,
//! a Ready condition), and kept alive as the kubelet does, by renewing a Lease in
//! `kube-node-lease` every quarter of its duration and refreshing the Ready condition.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{Agent, is_not_found};
use crate::clock::format_time;
use crate::wellknown;

/// Registers the Node, then heartbeats until aborted; every failure is logged and retried.
pub(super) async fn register_and_heartbeat(agent: Agent) {
    let period = Duration::from_secs((wellknown::NODE_LEASE_DURATION_SECONDS / 4) as u64);
    let mut registered = false;
    loop {
        if !registered {
            match register(&agent).await {
                Ok(()) => registered = true,
                Err(e) => tracing::warn!(node = %agent.node, "registering the node: {e:#}"),
            }
        }
        if registered {
            if let Err(e) = renew_lease(&agent).await {
                tracing::warn!(node = %agent.node, "renewing the node lease: {e:#}");
            }
            if let Err(e) = report_ready(&agent).await {
                tracing::debug!(node = %agent.node, "updating the node status: {e:#}");
            }
        }
        tokio::time::sleep(period).await;
    }
}

async fn register(agent: &Agent) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(agent.client.clone());
    if nodes.get_opt(&agent.node).await?.is_some() {
        return Ok(());
    }
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": agent.node, "labels": {
            wellknown::LABEL_HOSTNAME: agent.node, wellknown::LABEL_OS: "linux"}},
    }))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %agent.node, "node registered"),
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn report_ready(agent: &Agent) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(agent.client.clone());
    let now = format_time(agent.clock.now());
    let patch = json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "tokenwarden agent is posting ready status",
        "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    nodes
        .patch_status(&agent.node, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn renew_lease(agent: &Agent) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(agent.client.clone(), wellknown::NAMESPACE_NODE_LEASE);
    let now = agent.clock.now();
    let renew = now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    match leases.get_opt(&agent.node).await? {
        Some(_) => {
            let patch = json!({"spec": {"holderIdentity": agent.node, "renewTime": renew,
                "leaseDurationSeconds": wellknown::NODE_LEASE_DURATION_SECONDS}});
            leases
                .patch(&agent.node, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        None => {
            let lease: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": agent.node, "namespace": wellknown::NAMESPACE_NODE_LEASE},
                "spec": {"holderIdentity": agent.node, "renewTime": renew,
                         "leaseDurationSeconds": wellknown::NODE_LEASE_DURATION_SECONDS}}))?;
            match leases.create(&PostParams::default(), &lease).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}
