//! The record frame shared by both WALs.
//!
//! ```text
//! frame   = len:u32 crc:u32 body            (little endian; len = body length)
//! body    = position:u64 kind:u8 rest
//! kind 1  = data:    stream_id:u64 epoch:u64 base_offset:u64 end_offset:u64 payload
//! kind 2  = padding: (nothing) - the rest of the file WAL segment is unused
//! crc     = CRC-32C of body
//! ```
//! The position inside the body lets a reader tell a frame written at this place in this lap
//! from stale bytes of an earlier one (recycled file WAL segments).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{WalPosition, WalRecord};

/// `len` + `crc`.
pub const FRAME_HEADER_LEN: usize = 8;
const DATA_FIXED_LEN: usize = 8 + 1 + 8 * 4;
const PADDING_BODY_LEN: usize = 8 + 1;
/// The size of a padding frame.
pub(crate) const PADDING_FRAME_LEN: usize = FRAME_HEADER_LEN + PADDING_BODY_LEN;
/// Largest payload a frame may carry: bounds what a reader allocates for a garbage length.
pub const MAX_PAYLOAD_LEN: usize = 256 << 20;

const KIND_DATA: u8 = 1;
const KIND_PADDING: u8 = 2;

/// Bytes a data frame for `payload_len` bytes of payload takes.
pub(crate) fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + DATA_FIXED_LEN + payload_len
}

/// Appends the frame of `record` at `position` to `out`.
pub fn encode_frame(out: &mut BytesMut, position: WalPosition, record: &WalRecord) {
    let body_len = DATA_FIXED_LEN + record.payload.len();
    out.reserve(FRAME_HEADER_LEN + body_len);
    out.put_u32_le(body_len as u32);
    let crc_at = out.len();
    out.put_u32_le(0);
    let body_at = out.len();
    out.put_u64_le(position);
    out.put_u8(KIND_DATA);
    out.put_u64_le(record.stream_id);
    out.put_u64_le(record.epoch);
    out.put_u64_le(record.base_offset);
    out.put_u64_le(record.end_offset);
    out.put_slice(&record.payload);
    let crc = crc32c::crc32c(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a padding frame at `position`.
pub(crate) fn encode_padding(out: &mut BytesMut, position: WalPosition) {
    out.put_u32_le(PADDING_BODY_LEN as u32);
    let mut body = [0u8; PADDING_BODY_LEN];
    body[..8].copy_from_slice(&position.to_le_bytes());
    body[8] = KIND_PADDING;
    out.put_u32_le(crc32c::crc32c(&body));
    out.put_slice(&body);
}

/// What [`decode_frame`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A valid data frame of `len` bytes.
    Record { position: WalPosition, record: WalRecord, len: usize },
    /// A valid padding frame.
    Padding { position: WalPosition, len: usize },
    /// No valid frame here: a torn write, stale bytes or zeroes. `reason` says which check
    /// failed. Readers treat this as the end of the log.
    Invalid { reason: String },
}

/// Decodes the frame at the start of `buf`. With `expected`, a frame whose position differs
/// is reported as invalid (stale bytes from an earlier lap).
pub fn decode_frame(buf: &Bytes, expected: Option<WalPosition>) -> Decoded {
    let invalid = |reason: String| Decoded::Invalid { reason };
    if buf.len() < FRAME_HEADER_LEN {
        return invalid(format!("{} bytes left, fewer than a frame header", buf.len()));
    }
    let mut header = &buf[..FRAME_HEADER_LEN];
    let body_len = header.get_u32_le() as usize;
    let crc = header.get_u32_le();
    if !(PADDING_BODY_LEN..=DATA_FIXED_LEN + MAX_PAYLOAD_LEN).contains(&body_len) {
        return invalid(format!("implausible frame length {body_len}"));
    }
    if buf.len() < FRAME_HEADER_LEN + body_len {
        return invalid(format!("frame of {body_len} bytes runs past the end ({} left)", buf.len() - FRAME_HEADER_LEN));
    }
    let body = buf.slice(FRAME_HEADER_LEN..FRAME_HEADER_LEN + body_len);
    let actual = crc32c::crc32c(&body);
    if actual != crc {
        return invalid(format!("checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"));
    }
    let mut b = &body[..];
    let position = b.get_u64_le();
    if let Some(expected) = expected.filter(|e| *e != position) {
        return invalid(format!("frame position {position} where {expected} was expected (stale data)"));
    }
    let len = FRAME_HEADER_LEN + body_len;
    match b.get_u8() {
        KIND_PADDING if body_len == PADDING_BODY_LEN => Decoded::Padding { position, len },
        KIND_DATA if body_len >= DATA_FIXED_LEN => {
            let (stream_id, epoch, base_offset, end_offset) =
                (b.get_u64_le(), b.get_u64_le(), b.get_u64_le(), b.get_u64_le());
            if end_offset < base_offset {
                return invalid(format!("end offset {end_offset} below base offset {base_offset}"));
            }
            let payload = body.slice(DATA_FIXED_LEN..);
            Decoded::Record { position, record: WalRecord { stream_id, epoch, base_offset, end_offset, payload }, len }
        }
        kind => invalid(format!("unknown frame kind {kind} with body length {body_len}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(payload: &[u8]) -> WalRecord {
        WalRecord {
            stream_id: 7,
            epoch: 3,
            base_offset: 100,
            end_offset: 110,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn frames_roundtrip() {
        let mut buf = BytesMut::new();
        encode_frame(&mut buf, 42, &record(b"hello"));
        encode_padding(&mut buf, 42 + frame_len(5) as u64);
        let buf = buf.freeze();
        let Decoded::Record { position, record: r, len } = decode_frame(&buf, Some(42)) else { panic!() };
        assert_eq!((position, len), (42, frame_len(5)));
        assert_eq!(r, record(b"hello"));
        let rest = buf.slice(len..);
        assert_eq!(decode_frame(&rest, None), Decoded::Padding { position: 42 + len as u64, len: PADDING_FRAME_LEN });
    }

    #[test]
    fn stale_positions_are_rejected() {
        let mut buf = BytesMut::new();
        encode_frame(&mut buf, 42, &record(b"x"));
        assert!(matches!(decode_frame(&buf.freeze(), Some(43)), Decoded::Invalid { .. }));
    }

    #[test]
    fn zeroes_are_not_a_frame() {
        assert!(matches!(decode_frame(&Bytes::from(vec![0u8; 64]), None), Decoded::Invalid { .. }));
    }

    proptest! {
        /// Any single flipped bit or any truncation is detected, never decoded as a record.
        #[test]
        fn corruption_is_detected(payload in proptest::collection::vec(any::<u8>(), 0..300), bit in any::<usize>(), cut in any::<usize>()) {
            let mut buf = BytesMut::new();
            encode_frame(&mut buf, 9, &record(&payload));
            let whole = buf.clone().freeze();
            let cut = cut % whole.len();
            let truncated_is_invalid = matches!(decode_frame(&whole.slice(..cut), Some(9)), Decoded::Invalid { .. });
            prop_assert!(truncated_is_invalid);
            let bit = bit % (whole.len() * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
            let flipped_decodes = matches!(decode_frame(&buf.freeze(), Some(9)), Decoded::Record { .. });
            prop_assert!(!flipped_decodes);
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_frame(&Bytes::from(data), None);
        }
    }
}
