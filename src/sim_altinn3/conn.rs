//! Connections the simulator can cut.
//!
//! "Commit, then drop the connection" is the failure that tests idempotent
//! recovery: the client sent a request, Altinn created the correspondence,
//! and the answer never arrived. A handler cannot close its own TCP
//! connection in axum, so the listener wraps each socket in [`SimIo`], whose
//! reads and writes fail once its kill switch is set. The handler reaches the
//! switch through `ConnectInfo<Peer>`, sets it, and returns; hyper's attempt
//! to write the answer fails, and it closes the socket with nothing sent.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The peer of a connection and its kill switch.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    kill: Arc<AtomicBool>,
}

impl Peer {
    /// Make the connection fail: the current answer is never sent.
    pub fn drop_connection(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, SimListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP listener handing out killable sockets.
pub struct SimListener(pub TcpListener);

impl Listener for SimListener {
    type Io = SimIo;
    type Addr = Peer;

    async fn accept(&mut self) -> (SimIo, Peer) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let kill = Arc::new(AtomicBool::new(false));
                    let peer = Peer {
                        addr,
                        kill: kill.clone(),
                    };
                    return (
                        SimIo {
                            inner: stream,
                            kill,
                        },
                        peer,
                    );
                }
                // Too many open files and the like: wait, then go on.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Peer> {
        Ok(Peer {
            addr: self.0.local_addr()?,
            kill: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// A socket that fails every read and write once killed.
pub struct SimIo {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

impl SimIo {
    fn killed(&self) -> Option<io::Error> {
        self.kill.load(Ordering::SeqCst).then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "dropped after commit (fault injection)",
            )
        })
    }
}

impl AsyncRead for SimIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.killed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
