//! TEMPORARY stub until the seekable zstd module lands.
use super::ReadAt;
use std::io::{self, Read};
use std::sync::Arc;
pub struct ZstdIndex;
#[derive(Debug, thiserror::Error)]
#[error("zstd not implemented yet")]
pub struct ZstdError;
impl ZstdIndex { pub fn to_bytes(&self) -> Vec<u8> { vec![] } pub fn from_bytes(_: &[u8]) -> Result<Self, ZstdError> { Err(ZstdError) } }
pub fn build_index<R: Read>(_r: R, _sink: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> Result<ZstdIndex, ZstdError> { Err(ZstdError) }
pub struct ZstdReader;
impl ZstdReader { pub fn new(_c: Arc<dyn ReadAt>, _i: Arc<ZstdIndex>) -> io::Result<Self> { Ok(ZstdReader) } }
impl ReadAt for ZstdReader { fn read_at(&self, _b: &mut [u8], _o: u64) -> io::Result<usize> { Err(io::Error::other("stub")) } fn len(&self) -> u64 { 0 } }
