//! A body that counts the bytes passing through it (metering at the door).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;

use crate::wake::Busy;

/// `inner`, adding the length of every data frame to `counter`.
#[derive(Debug)]
pub struct Counted<B> {
    inner: B,
    counter: Counter,
    /// Keeps its app counted as busy until the body is done (a streamed answer is open
    /// work: an app sending server-sent events is not idle).
    _busy: Option<Busy>,
}

impl<B> Counted<B> {
    /// Counts `inner`'s bytes into `counter`.
    pub fn new(inner: B, counter: Counter) -> Self {
        Self {
            inner,
            counter,
            _busy: None,
        }
    }

    /// Holds `busy` for as long as the body lives.
    pub fn holding(mut self, busy: Busy) -> Self {
        self._busy = Some(busy);
        self
    }
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.inc_by(data.remaining() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An upgraded connection to an app that counts, as they pass, the bytes read from it (what
/// the app sends clients) and written to it, so a WebSocket open for hours is metered while
/// it lasts, not when it closes.
#[derive(Debug)]
pub struct CountedIo<T> {
    inner: T,
    read: Counter,
    written: Counter,
}

impl<T> CountedIo<T> {
    /// Counts `inner`'s reads into `read` and writes into `written`.
    pub fn new(inner: T, read: Counter, written: Counter) -> Self {
        Self {
            inner,
            read,
            written,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.read.inc_by((buf.filled().len() - before) as u64);
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CountedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            self.written.inc_by(n as u64);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
