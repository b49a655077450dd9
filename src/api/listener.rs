//! Connections: the TLS listener and its defences against slow, idle and too many clients.
//! Every limit here is about sockets, not requests (those are in [`super::inflight`]):
//!
//! * a TLS handshake must finish within [`HANDSHAKE_TIMEOUT`];
//! * the first request must arrive within [`FIRST_REQUEST_TIMEOUT`] of the handshake (this
//!   also bounds hyper's protocol detection, which has no timer of its own);
//! * an HTTP/1.1 request head must arrive within [`HEADER_READ_TIMEOUT`]; hyper re-arms that
//!   timer whenever a keep-alive connection waits for its next request, so it is the idle
//!   keep-alive timeout too (kube-apiserver: `ReadHeaderTimeout` 32 s, `IdleTimeout` 90 s);
//! * an HTTP/2 connection is pinged every [`H2_PING_INTERVAL`] and closed when a ping goes
//!   unanswered, so a peer that vanished (a half-open TCP connection) does not hold it;
//! * at most `max_connections` are open at once: one more is closed as soon as it is
//!   accepted, before any TLS work, so a flood cannot run the process out of descriptors.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
pub(crate) const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest HTTP/1.1 request head hyper buffers. Heads up to [`super::MAX_HEADER_BYTES`]
/// reach the router, which answers 414/431 with a `Status`; hyper itself answers a bare 431
/// only past this.
pub(crate) const MAX_HEAD_BUFFER: usize = 4 << 20;

/// An acceptor that admits at most `slots` connections at once; `inner` does the TLS.
#[derive(Clone)]
pub(crate) struct CappedAcceptor<A> {
    inner: A,
    slots: Arc<Semaphore>,
}

impl<A> CappedAcceptor<A> {
    pub(crate) fn new(inner: A, max_connections: usize) -> Self {
        CappedAcceptor {
            inner,
            slots: Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS))),
        }
    }
}

impl<A, I, S> Accept<I, S> for CappedAcceptor<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send,
{
    type Stream = Held<A::Stream>;
    type Service = A::Service;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let permit = self.slots.clone().try_acquire_owned();
        // Over the cap, the inner acceptor's future (which owns the socket) is dropped
        // unpolled: the connection closes without a handshake.
        let accepted = permit.is_ok().then(|| self.inner.accept(stream, service));
        Box::pin(async move {
            let (Ok(permit), Some(accepted)) = (permit, accepted) else {
                return Err(io::Error::other("connection limit reached"));
            };
            let (stream, service) = accepted.await?;
            Ok((
                Held {
                    stream,
                    _slot: permit,
                },
                service,
            ))
        })
    }
}

/// A connection's stream, holding its slot until the connection is dropped.
pub(crate) struct Held<T> {
    stream: T,
    _slot: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Raises the open-file soft limit to the hard limit (each connection is a descriptor) and
/// returns the limit now in force.
pub(crate) fn raise_open_file_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum_server::accept::DefaultAcceptor;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn the_connection_past_the_cap_is_refused_and_a_freed_slot_is_reused() {
        let acceptor = CappedAcceptor::new(DefaultAcceptor::new(), 2);
        let (a, _a_peer) = tokio::io::duplex(64);
        let (b, _b_peer) = tokio::io::duplex(64);
        let (c, _c_peer) = tokio::io::duplex(64);
        let first = acceptor.accept(a, ()).await;
        let second = acceptor.accept(b, ()).await;
        assert!(first.is_ok() && second.is_ok());
        let third = acceptor.accept(c, ()).await;
        assert!(third.is_err(), "a third connection over a cap of 2");
        let (mut held, ()) = first.unwrap();
        held.write_all(b"x").await.unwrap();
        drop(held);
        let (d, _d_peer) = tokio::io::duplex(64);
        assert!(acceptor.accept(d, ()).await.is_ok(), "the freed slot");
    }
}
