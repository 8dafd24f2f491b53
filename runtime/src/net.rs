//! The network the client listener runs on, injected as a type.
//!
//! Production serves tokio's [`TcpListener`]; a simulation (turmoil, in `tests/turmoil.rs`)
//! serves its own listener through a newtype. [`crate::server::Server`] and everything below it
//! (TLS, the connection tasks) are generic over [`Listener`] and monomorphised, so production
//! pays no virtual call or boxing: with tokio's listener the code is what it was before the
//! abstraction.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// A bound listener that hands out client byte streams.
pub trait Listener: Send + Sync + 'static {
    /// One accepted client connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next client, ready to be served (socket options already set).
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl Listener for TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        // Small frames (PONG, +OK, one MSG) must not wait for Nagle's timer.
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }
}
