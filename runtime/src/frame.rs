//! One length-prefixed flatbuffer frame on a QUIC stream (see
//! `strata_schema::frame`): the length is checked against a maximum before
//! anything is allocated.

use bytes::Bytes;
use strata_schema::frame::{self, FRAME_HEADER_BYTES};

/// Errors reading one frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    #[error("{0}")]
    Frame(#[from] frame::FrameError),
    #[error("stream ended after {got} of {want} bytes")]
    Short { got: usize, want: usize },
    #[error("i/o: {0}")]
    Io(String),
}

/// Reads one length-prefixed frame; the length is checked before allocating.
pub async fn read_frame(recv: &mut quinn::RecvStream, max: usize) -> Result<Bytes, FrameReadError> {
    let mut prefix = [0u8; FRAME_HEADER_BYTES];
    read_exact(recv, &mut prefix).await?;
    let len = frame::parse_header(prefix, max)?;
    let mut body = vec![0u8; len];
    read_exact(recv, &mut body).await?;
    Ok(Bytes::from(body))
}

async fn read_exact(recv: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<(), FrameReadError> {
    use quinn::ReadExactError;
    recv.read_exact(buf).await.map_err(|e| match e {
        ReadExactError::FinishedEarly(got) => FrameReadError::Short {
            got,
            want: buf.len(),
        },
        ReadExactError::ReadError(e) => FrameReadError::Io(e.to_string()),
    })
}

/// Writes one frame: a request, or one reply. The body is handed to QUIC as
/// it is (no copy into the stream's buffer: a forward carries megabytes).
pub async fn write_frame(
    send: &mut quinn::SendStream,
    body: Bytes,
) -> Result<(), quinn::WriteError> {
    let header = Bytes::copy_from_slice(&frame::header(body.len()));
    send.write_all_chunks(&mut [header, body]).await
}
