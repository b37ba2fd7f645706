//! Frames on a QUIC stream: a 4-byte big-endian length, then that many bytes of
//! one flatbuffer (`Request` or `Response`). Lengths are bounded before any
//! allocation.

/// Largest frame either side accepts (a batch plus its envelope).
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Length of the frame prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Errors decoding a frame header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("empty frame")]
    Empty,
}

/// Encodes the prefix for a frame body of `len` bytes.
pub fn header(len: usize) -> [u8; FRAME_HEADER_BYTES] {
    assert!(len <= u32::MAX as usize, "frame length fits in u32");
    (len as u32).to_be_bytes()
}

/// Decodes a frame prefix and checks it against `max`.
pub fn parse_header(prefix: [u8; FRAME_HEADER_BYTES], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_bounds() {
        assert_eq!(parse_header(header(10), 100), Ok(10));
        assert_eq!(parse_header(header(0), 100), Err(FrameError::Empty));
        assert_eq!(
            parse_header(header(101), 100),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        );
    }
}
