//! Framing: one JSON message per `\n`-terminated line, at most [`MAX_FRAME`] bytes.
//!
//! [`MAX_FRAME`]: crate::protocol::MAX_FRAME

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The line was longer than the limit; it has been skipped up to its end.
    #[error("a message was longer than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads the next line without its `\n`; `None` at end of input. A line over `limit` bytes
/// is consumed and reported as [`FrameError::TooLarge`] without buffering it whole.
pub async fn read_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut line = Vec::new();
    let mut oversized = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return match (line.is_empty() && !oversized, oversized) {
                (true, _) => Ok(None),
                (false, true) => Err(FrameError::TooLarge { limit }),
                (false, false) => Ok(Some(line)),
            };
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(end) => (&available[..end], end + 1),
            None => (available, available.len()),
        };
        let found_end = done > chunk.len();
        if !oversized {
            if line.len() + chunk.len() > limit {
                oversized = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        reader.consume(done);
        if found_end {
            return if oversized {
                Err(FrameError::TooLarge { limit })
            } else {
                Ok(Some(line))
            };
        }
    }
}

/// Writes one message as a line and flushes.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, json: &str) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(json.len() + 1);
    bytes.extend_from_slice(json.as_bytes());
    bytes.push(b'\n');
    writer.write_all(&bytes).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn lines_are_split_and_oversized_ones_skipped() {
        let input = format!("{{\"a\":1}}\n{}\n{{\"b\":2}}\nlast", "x".repeat(100));
        let mut reader = BufReader::with_capacity(8, input.as_bytes());
        assert_eq!(
            read_frame(&mut reader, 50).await.ok().flatten(),
            Some(b"{\"a\":1}".to_vec())
        );
        assert!(matches!(
            read_frame(&mut reader, 50).await,
            Err(FrameError::TooLarge { limit: 50 })
        ));
        assert_eq!(
            read_frame(&mut reader, 50).await.ok().flatten(),
            Some(b"{\"b\":2}".to_vec())
        );
        assert_eq!(
            read_frame(&mut reader, 50).await.ok().flatten(),
            Some(b"last".to_vec())
        );
        assert!(matches!(read_frame(&mut reader, 50).await, Ok(None)));
    }
}
