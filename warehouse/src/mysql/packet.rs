//! MySQL packet framing and the protocol's basic encodings.
//!
//! A packet is `length:u24le sequence:u8 payload`; a payload of 2^24-1 bytes or more is split
//! into maximum-size packets followed by a shorter (possibly empty) one. Sequence ids count up
//! within one command exchange and wrap at 256.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest payload one packet carries.
pub const MAX_PACKET: usize = 0xff_ffff;

/// Why the connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("packet out of order: sequence {got}, expected {expected}")]
    Sequence { got: u8, expected: u8 },
    #[error("message of {0} bytes exceeds max_allowed_packet ({1})")]
    TooLarge(usize, usize),
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
}

/// Reads and writes packets of one connection, tracking sequence ids.
#[derive(Debug)]
pub struct PacketStream<S> {
    stream: S,
    seq: u8,
    max_message: usize,
    out: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> PacketStream<S> {
    pub fn new(stream: S, max_message: usize) -> Self {
        PacketStream { stream, seq: 0, max_message, out: BytesMut::with_capacity(16 << 10) }
    }

    /// Carries a connection over to a new transport (the same socket after the switch to TLS):
    /// the sequence goes on from `sequence`.
    pub fn resume(stream: S, max_message: usize, sequence: u8) -> Self {
        PacketStream { seq: sequence, ..PacketStream::new(stream, max_message) }
    }

    /// A new command begins: sequence ids restart at 0.
    pub fn reset_sequence(&mut self) {
        self.seq = 0;
    }

    /// The sequence id the next packet (either way) carries.
    pub fn sequence(&self) -> u8 {
        self.seq
    }

    /// Reads one message (joining split packets). `None` at a clean end of stream.
    pub async fn read(&mut self) -> Result<Option<Bytes>, PacketError> {
        let mut message = BytesMut::new();
        loop {
            let mut header = [0u8; 4];
            match self.stream.read_exact(&mut header).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && message.is_empty() => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
            if header[3] != self.seq {
                return Err(PacketError::Sequence { got: header[3], expected: self.seq });
            }
            self.seq = self.seq.wrapping_add(1);
            if message.len() + len > self.max_message {
                return Err(PacketError::TooLarge(message.len() + len, self.max_message));
            }
            let start = message.len();
            message.resize(start + len, 0);
            self.stream.read_exact(&mut message[start..]).await?;
            if len < MAX_PACKET {
                return Ok(Some(message.freeze()));
            }
        }
    }

    /// Queues one message (split as needed); [`Self::flush`] sends what is queued.
    pub fn queue(&mut self, payload: &[u8]) {
        let mut rest = payload;
        loop {
            let n = rest.len().min(MAX_PACKET);
            self.out.put_uint_le(n as u64, 3);
            self.out.put_u8(self.seq);
            self.seq = self.seq.wrapping_add(1);
            self.out.put_slice(&rest[..n]);
            rest = &rest[n..];
            if n < MAX_PACKET {
                return;
            }
        }
    }

    /// Bytes queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    pub async fn flush(&mut self) -> Result<(), PacketError> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        self.stream.flush().await?;
        Ok(())
    }

    pub async fn send(&mut self, payload: &[u8]) -> Result<(), PacketError> {
        self.queue(payload);
        self.flush().await
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}

/// Length-encoded integer.
pub fn put_lenenc_int(out: &mut BytesMut, v: u64) {
    match v {
        0..=250 => out.put_u8(v as u8),
        251..=0xffff => {
            out.put_u8(0xfc);
            out.put_u16_le(v as u16);
        }
        0x1_0000..=0xff_ffff => {
            out.put_u8(0xfd);
            out.put_uint_le(v, 3);
        }
        _ => {
            out.put_u8(0xfe);
            out.put_u64_le(v);
        }
    }
}

/// Length-encoded string.
pub fn put_lenenc_bytes(out: &mut BytesMut, v: &[u8]) {
    put_lenenc_int(out, v.len() as u64);
    out.put_slice(v);
}

/// Reads a length-encoded integer; `None` for the NULL marker (0xfb) or short input.
pub fn get_lenenc_int(buf: &mut impl Buf) -> Result<Option<u64>, PacketError> {
    if !buf.has_remaining() {
        return Err(PacketError::Malformed("missing length-encoded integer"));
    }
    let first = buf.get_u8();
    let need = |buf: &dyn Buf, n: usize| {
        if buf.remaining() < n {
            Err(PacketError::Malformed("truncated length-encoded integer"))
        } else {
            Ok(())
        }
    };
    Ok(match first {
        0..=250 => Some(first as u64),
        0xfb => None,
        0xfc => {
            need(buf, 2)?;
            Some(buf.get_u16_le() as u64)
        }
        0xfd => {
            need(buf, 3)?;
            Some(buf.get_uint_le(3))
        }
        0xfe => {
            need(buf, 8)?;
            Some(buf.get_u64_le())
        }
        _ => return Err(PacketError::Malformed("0xff is not a length-encoded integer")),
    })
}

/// Reads a length-encoded string.
pub fn get_lenenc_bytes(buf: &mut Bytes) -> Result<Option<Bytes>, PacketError> {
    let Some(len) = get_lenenc_int(buf)? else { return Ok(None) };
    let len = usize::try_from(len).map_err(|_| PacketError::Malformed("length-encoded string too long"))?;
    if buf.remaining() < len {
        return Err(PacketError::Malformed("truncated length-encoded string"));
    }
    Ok(Some(buf.split_to(len)))
}

/// Reads a NUL-terminated string.
pub fn get_nul_str(buf: &mut Bytes) -> Result<Bytes, PacketError> {
    let end = buf.iter().position(|b| *b == 0).ok_or(PacketError::Malformed("missing NUL terminator"))?;
    let s = buf.split_to(end);
    buf.advance(1);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[tokio::test]
    async fn large_messages_split_and_join() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut tx = PacketStream::new(a, 64 << 20);
        let mut rx = PacketStream::new(b, 64 << 20);
        let big = vec![7u8; MAX_PACKET * 2 + 10];
        let exact = vec![9u8; MAX_PACKET];
        let sender = tokio::spawn(async move {
            tx.send(&big).await.unwrap();
            tx.send(&exact).await.unwrap();
            tx.send(b"").await.unwrap();
        });
        assert_eq!(rx.read().await.unwrap().unwrap().len(), MAX_PACKET * 2 + 10);
        assert_eq!(
            rx.read().await.unwrap().unwrap().len(),
            MAX_PACKET,
            "a maximum-size packet is followed by an empty one"
        );
        assert_eq!(rx.read().await.unwrap().unwrap().len(), 0);
        sender.await.unwrap();
        assert!(rx.read().await.unwrap().is_none(), "clean end of stream");
    }

    #[tokio::test]
    async fn out_of_order_and_oversized_packets_are_errors() {
        let (mut a, b) = tokio::io::duplex(1024);
        let mut rx = PacketStream::new(b, 16);
        a.write_all(&[1, 0, 0, 5, b'x']).await.unwrap();
        assert!(matches!(rx.read().await, Err(PacketError::Sequence { got: 5, expected: 0 })));
        let (mut a, b) = tokio::io::duplex(1024);
        let mut rx = PacketStream::new(b, 16);
        a.write_all(&[100, 0, 0, 0]).await.unwrap();
        assert!(matches!(rx.read().await, Err(PacketError::TooLarge(100, 16))));
    }

    proptest! {
        #[test]
        fn lenenc_ints_roundtrip(v in any::<u64>()) {
            let mut out = BytesMut::new();
            put_lenenc_int(&mut out, v);
            let mut b = out.freeze();
            prop_assert_eq!(get_lenenc_int(&mut b).unwrap(), Some(v));
            prop_assert!(b.is_empty());
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut b = Bytes::from(data);
            let _ = get_lenenc_bytes(&mut b);
            let _ = get_nul_str(&mut b);
        }
    }
}
