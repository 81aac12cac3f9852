//! Random access through the index: a chunk source with live inflaters resumed from points.

use super::*;
use crate::blob::indexed::{IndexedReader, StreamIndex};

/// Random access to the decompressed bytes of a gzip blob through its [`GzipIndex`].
pub type GzipReader = IndexedReader<GzipIndex>;

impl StreamIndex for GzipIndex {
    const CODEC: &'static str = "gzip";
    type Source = GzipSource;

    fn compressed_len(&self) -> u64 {
        self.compressed_len
    }

    fn uncompressed_len(&self) -> u64 {
        self.uncompressed_len
    }

    fn source(blob: Arc<dyn ReadAt>, index: Arc<Self>) -> GzipSource {
        GzipSource { blob, index }
    }
}

/// Live inflaters resumed from a [`GzipIndex`]'s access points.
pub struct GzipSource {
    blob: Arc<dyn ReadAt>,
    index: Arc<GzipIndex>,
}

impl Source for GzipSource {
    type Decoder = GzipDecoder;

    fn len(&self) -> u64 {
        self.index.uncompressed_len
    }

    fn restart_point(&self, offset: u64) -> u64 {
        self.index.point_for(offset).out
    }

    fn next_restart_point(&self, offset: u64) -> Option<u64> {
        let points = &self.index.points;
        let next = points.get(points.partition_point(|p| p.out <= offset))?.out;
        (next < self.index.uncompressed_len).then_some(next)
    }

    fn open(&self, offset: u64) -> io::Result<GzipDecoder> {
        let p = self.index.point_for(offset);
        let mut inflater = Inflater::new_raw()?;
        if p.bits > 0 {
            let mut byte = [0u8];
            crate::blob::read_exact_at(self.blob.as_ref(), &mut byte, p.inp - 1)?;
            inflater.prime(p.bits, byte[0] >> (8 - p.bits))?;
        }
        if p.window_len > 0 {
            inflater.set_dictionary(&p.window()?)?;
        }
        let end = self.index.compressed_len;
        let src = ReadAtSource::new(Arc::clone(&self.blob), p.inp, end);
        let input = Input::new(src, READ_INPUT_BYTES, p.inp);
        Ok(GzipDecoder {
            stream: GzStream::new(input, inflater, p.member_start),
            pos: p.out,
            len: self.index.uncompressed_len,
        })
    }
}

/// A live inflater of a [`GzipReader`], positioned at `pos`.
pub struct GzipDecoder {
    stream: GzStream<ReadAtSource>,
    pos: u64,
    len: u64,
}

impl Decoder for GzipDecoder {
    fn position(&self) -> u64 {
        self.pos
    }

    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos >= self.len || out.is_empty() {
                return Ok(0);
            }
            let want = (out.len() as u64).min(self.len - self.pos) as usize;
            let (n, event) = self.stream.step(&mut out[..want], Z_NO_FLUSH)?;
            self.pos += n as u64;
            if self.pos == self.len && event != Event::End {
                self.finish()?;
            }
            if n > 0 {
                return Ok(n);
            }
            if event == Event::End {
                return Ok(0);
            }
        }
    }
}

impl GzipDecoder {
    /// At the end of the data: decodes what remains of the stream (end of the last block,
    /// trailers, empty members) so the last member's CRC-32 and length are checked too.
    fn finish(&mut self) -> Result<()> {
        let mut scratch = [0u8; 64];
        loop {
            let (n, event) = self.stream.step(&mut scratch, Z_NO_FLUSH)?;
            if n > 0 {
                let at = self.stream.input.pos();
                return Err(corrupt(at, "more data than the index says"));
            }
            if event == Event::End {
                return Ok(());
            }
        }
    }
}
