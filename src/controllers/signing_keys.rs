//! The generated signing keys, kept in the store as one sealed [`SigningKeys`] record so that
//! every replica signs with the same ring, and rotated live in the safe order
//! (`tokens::rotation` has the stages).
//!
//! Every replica runs [`KeyRotation::run`]: it follows the record (read again every second
//! and on SIGHUP) and puts its key set in use, takes `tokenwarden keys rotate` requests from
//! its data directory, and writes the data directory's status file for `tokenwarden keys
//! status`. Only the elected leader moves keys from one stage to the next, so the replicas
//! switch together, when the record changes.
//!
//! Owns: the record's I/O, the request and status files. Must not: decide stages (that is
//! `tokens::rotation`) or hold a private key outside the [`Keyring`] and the sealed record.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::LeaderGate;
use crate::clock::SharedClock;
use crate::registry::{Registry, RegistryError};
use crate::reload::{self, Trigger};
use crate::tokens::keyring::Keyring;
use crate::tokens::keys::generate_rsa_2048_pem;
use crate::tokens::rotation::{Kek, KeyInfo, SigningKeys, Stage, TokenLifetimes};

/// `tokenwarden keys rotate` leaves its request here, in the server's data directory.
pub(crate) const REQUEST_FILE: &str = "keys-rotate.request";

/// The server writes the ring's state here whenever it changes (`tokenwarden keys status`).
pub(crate) const STATUS_FILE: &str = "keys-status.json";

/// A rotation asked for by `tokenwarden keys rotate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RotateRequest {
    /// Echoed in the status file's `lastRequest`, so the command knows its answer.
    pub(crate) id: String,
    pub(crate) publish_ahead_seconds: i64,
}

/// What `tokenwarden keys status` prints: the ring (no key material) and the answer to the
/// last request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Status {
    pub(crate) written: Option<Timestamp>,
    pub(crate) pid: u32,
    pub(crate) keys: Vec<KeyInfo>,
    /// When the leader next moves a key on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) next_change: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_request: Option<RequestOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestOutcome {
    pub(crate) id: String,
    /// The new key's kid, or why there is none.
    pub(crate) result: Result<String, String>,
}

/// One replica's part in the rotation.
pub(crate) struct KeyRotation {
    pub(crate) registry: Registry,
    pub(crate) kek: Arc<Kek>,
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) lifetimes: TokenLifetimes,
    pub(crate) clock: SharedClock,
    pub(crate) data_dir: PathBuf,
    /// SIGHUP: look for a request and read the record now.
    pub(crate) trigger: Trigger,
    /// The record's revision whose keys `keyring` holds.
    pub(crate) seen: i64,
}

/// The ring in the store, created from `first_pem` (the data directory's `sa.key`) if there
/// is none yet; a replica that loses the race to create it takes the winner's.
pub(crate) async fn load_or_create(
    registry: &Registry,
    kek: &Kek,
    first_pem: &[u8],
    now: Timestamp,
) -> anyhow::Result<(SigningKeys, i64)> {
    for _ in 0..3 {
        if let Some(found) = read(registry).await? {
            return Ok(found);
        }
        let ring = SigningKeys::first(first_pem, kek, now)?;
        match registry
            .put_signing_keys(serde_json::to_vec(&ring)?, None)
            .await
        {
            Ok(revision) => {
                tracing::info!(kid = %ring.keys[0].info.kid, "service-account signing keys moved into the store, sealed with key-encryption key {}", kek.id());
                return Ok((ring, revision));
            }
            Err(RegistryError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("the signing keys record keeps changing under this replica")
}

async fn read(registry: &Registry) -> anyhow::Result<Option<(SigningKeys, i64)>> {
    let Some(record) = registry.signing_keys().await? else {
        return Ok(None);
    };
    let ring = serde_json::from_slice(&record.value).context("decoding the signing keys record")?;
    Ok(Some((ring, record.revision)))
}

impl KeyRotation {
    /// Follows, rotates and advances until `shutdown` turns true.
    pub(crate) async fn run(
        self,
        leader: Arc<dyn LeaderGate>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut seen = self.seen;
        let mut fired = self.trigger.subscribe();
        self.write_status(None).await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = fired.changed() => {}
                _ = tokio::time::sleep(reload::POLL) => {}
            }
            if *shutdown.borrow() {
                return;
            }
            let outcome = self.take_request().await;
            if let Err(e) = self.step(&mut seen, leader.is_leader()).await {
                tracing::warn!("signing keys: {e:#}");
            }
            if outcome.is_some() {
                self.write_status(outcome).await;
            }
        }
    }

    /// Advances the stages if this replica leads, then puts the record's keys in use if it
    /// changed since `seen`.
    async fn step(&self, seen: &mut i64, leads: bool) -> anyhow::Result<()> {
        let Some((mut ring, revision)) = read(&self.registry).await? else {
            anyhow::bail!("the signing keys record is gone");
        };
        let (ring, revision) = if leads && ring.advance(self.clock.now(), self.lifetimes) {
            let written = self
                .registry
                .put_signing_keys(serde_json::to_vec(&ring)?, Some(revision))
                .await?;
            let stages: Vec<String> = ring
                .keys
                .iter()
                .map(|k| format!("{} {}", k.info.kid, k.info.stage.as_str()))
                .collect();
            tracing::info!("signing keys advanced: {}", stages.join(", "));
            (ring, written)
        } else {
            (ring, revision)
        };
        if revision != *seen {
            self.keyring.replace(ring.key_set(&self.kek)?);
            *seen = revision;
            self.write_status(None).await;
        }
        Ok(())
    }

    /// Carries out a request left by `tokenwarden keys rotate`, if there is one.
    async fn take_request(&self) -> Option<RequestOutcome> {
        let path = self.data_dir.join(REQUEST_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("ignoring {}: {e}", path.display());
                let _ = std::fs::remove_file(&path);
                return None;
            }
        };
        let _ = std::fs::remove_file(&path);
        let request: RotateRequest = match serde_json::from_slice(&text) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("ignoring {}: {e}", path.display());
                return None;
            }
        };
        let ahead = SignedDuration::from_secs(request.publish_ahead_seconds.max(0));
        let result = self.rotate(ahead).await.map_err(|e| format!("{e:#}"));
        match &result {
            Ok(kid) => tracing::info!(
                %kid,
                "signing keys: new key published; it signs in {ahead:#}"
            ),
            Err(e) => tracing::warn!("signing keys: rotation refused: {e}"),
        }
        Some(RequestOutcome {
            id: request.id,
            result,
        })
    }

    /// Step 1 of a rotation: a new RSA-2048 key is published, and signs `ahead` later.
    async fn rotate(&self, ahead: SignedDuration) -> anyhow::Result<String> {
        let pem = generate_rsa_2048_pem()?;
        for _ in 0..5 {
            let Some((mut ring, revision)) = read(&self.registry).await? else {
                anyhow::bail!("the signing keys record is gone");
            };
            let kid = ring
                .rotate(pem.as_bytes(), &self.kek, self.clock.now(), ahead)?
                .info
                .kid
                .clone();
            let body = serde_json::to_vec(&ring)?;
            match self.registry.put_signing_keys(body, Some(revision)).await {
                Ok(_) => return Ok(kid),
                Err(RegistryError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("the signing keys record kept changing; try again")
    }

    /// Writes the status file from the record (best effort: a status file that cannot be
    /// written is logged, and nothing else depends on it).
    async fn write_status(&self, last_request: Option<RequestOutcome>) {
        let ring = match read(&self.registry).await {
            Ok(Some((ring, _))) => ring,
            _ => return,
        };
        let status = Status {
            written: Some(self.clock.now()),
            pid: std::process::id(),
            keys: ring.keys.iter().map(|k| k.info.clone()).collect(),
            next_change: ring.next_change(),
            last_request,
        };
        if let Err(e) = write_status_file(&self.data_dir, &status) {
            tracing::warn!(
                "writing {}: {e:#}",
                self.data_dir.join(STATUS_FILE).display()
            );
        }
    }
}

fn write_status_file(dir: &Path, status: &Status) -> anyhow::Result<()> {
    let mut body = serde_json::to_vec_pretty(status)?;
    body.push(b'\n');
    crate::pki::write_atomic(&dir.join(STATUS_FILE), &body, 0o600)?;
    Ok(())
}

/// The status file of `dir`, if a server on generated keys wrote one.
pub(crate) fn read_status(dir: &Path) -> anyhow::Result<Status> {
    let path = dir.join(STATUS_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "{} has no {STATUS_FILE}: no server has run there on generated keys (one that signs with --service-account-signing-key-file rotates by replacing that file, which it re-reads when it changes)",
            dir.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_slice(&text).with_context(|| format!("decoding {}", path.display()))
}

/// `tokenwarden keys rotate`: leaves a request for the server running on `dir` and waits
/// up to `wait` for its answer; the status that carries it.
pub(crate) async fn request_rotation(
    dir: &Path,
    publish_ahead: SignedDuration,
    wait: Duration,
) -> anyhow::Result<Status> {
    read_status(dir)?;
    if crate::pki::datadir::lock(dir).is_ok() {
        anyhow::bail!(
            "no server is running on {}: the server carries out the rotation; start `tokenwarden serve --data-dir {}` first",
            dir.display(),
            dir.display()
        );
    }
    let request = RotateRequest {
        id: uuid::Uuid::new_v4().to_string(),
        publish_ahead_seconds: publish_ahead.as_secs(),
    };
    let body = serde_json::to_vec(&request)?;
    let path = dir.join(REQUEST_FILE);
    crate::pki::write_atomic(&path, &body, 0o600)?;
    // Run as root beside a server that runs as its own user (the systemd unit): the request
    // must be the server's to read. Without the right to give it away this fails, harmlessly.
    if let Ok(owner) = std::fs::metadata(dir) {
        use std::os::unix::fs::MetadataExt as _;
        let _ = std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid()));
    }
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(status) = read_status(dir) else {
            continue;
        };
        match &status.last_request {
            Some(answer) if answer.id == request.id => match &answer.result {
                Ok(_) => return Ok(status),
                Err(e) => anyhow::bail!("the server refused the rotation: {e}"),
            },
            _ => {}
        }
    }
    let _ = std::fs::remove_file(dir.join(REQUEST_FILE));
    anyhow::bail!(
        "the server on {} did not answer within {wait:?}; its log says why",
        dir.display()
    )
}

/// The status as a table, with what happens next.
pub(crate) fn render_status(status: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let t = |at: Timestamp| at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let _ = writeln!(
        out,
        "{:<45} {:<6} {:<10} {:<21} UNTIL",
        "KID", "ALG", "STAGE", "SINCE"
    );
    for k in &status.keys {
        let (since, until) = match k.stage {
            Stage::Published => (t(k.created), format!("signs from {}", t(k.signs_from))),
            Stage::Signing => (t(k.signs_from), "the next rotation".to_string()),
            Stage::Verifying => (
                t(k.signs_from),
                k.retires_at
                    .map(|at| format!("retires at {}", t(at)))
                    .unwrap_or_default(),
            ),
        };
        let _ = writeln!(
            out,
            "{:<45} {:<6} {:<10} {:<21} {until}",
            k.kid,
            k.algorithm,
            k.stage.as_str(),
            since
        );
    }
    if let Some(next) = status.next_change {
        let _ = writeln!(out, "next change at {}", t(next));
    }
    if let Some(written) = status.written {
        let _ = writeln!(
            out,
            "(written by server pid {} at {})",
            status.pid,
            t(written)
        );
    }
    out
}
