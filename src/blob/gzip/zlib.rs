//! Minimal safe wrapper over zlib-rs's C-style inflate API (`libz-rs-sys`).
// The only FFI of the crate: zlib-rs exposes inflatePrime/inflateSetDictionary/Z_BLOCK (what an
// access point needs) through zlib's C API alone. Every unsafe block below says why it holds.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_uint, CStr};
use std::io;

use libz_rs_sys as z;

pub(super) use z::{Z_BLOCK, Z_BUF_ERROR, Z_NO_FLUSH, Z_OK, Z_STREAM_END};

/// Raw DEFLATE (no zlib/gzip wrapper), 32 KiB window.
const RAW_WINDOW_BITS: c_int = -15;

/// What one [`Inflater::inflate`] call did.
pub(super) struct Inflated {
    pub code: c_int,
    pub consumed: usize,
    pub produced: usize,
    pub data_type: c_int,
}

/// An initialised raw-inflate `z_stream`, ended on drop. The stream lives in a `Box` so
/// its address never changes (zlib's state may point back at it).
pub(super) struct Inflater {
    strm: Box<z::z_stream>,
}

// SAFETY: the z_stream and the state it points to are owned exclusively by this value
// (allocated through the Rust global allocator); `next_in`/`next_out` only point at caller
// buffers during a call. Nothing is tied to the creating thread.
unsafe impl Send for Inflater {}

fn zerr(what: &str, code: c_int) -> io::Error {
    io::Error::other(format!("zlib {what} failed with code {code}"))
}

impl Inflater {
    pub(super) fn new_raw() -> io::Result<Self> {
        // `default()` installs zlib-rs's Rust allocator, as inflateInit requires.
        let mut strm = Box::new(z::z_stream::default());
        let size = std::mem::size_of::<z::z_stream>() as c_int;
        // SAFETY: `strm` is a valid z_stream with allocator fields set; the version string
        // is zlib-rs's own static C string.
        let rc = unsafe { z::inflateInit2_(strm.as_mut(), RAW_WINDOW_BITS, z::zlibVersion(), size) };
        if rc != Z_OK {
            return Err(zerr("inflateInit2", rc));
        }
        Ok(Self { strm })
    }

    /// Starts a new DEFLATE stream (next gzip member); keeps the allocation.
    pub(super) fn reset(&mut self) -> io::Result<()> {
        // SAFETY: the stream was initialised by `new_raw`.
        match unsafe { z::inflateReset(self.strm.as_mut()) } {
            Z_OK => Ok(()),
            rc => Err(zerr("inflateReset", rc)),
        }
    }

    /// Inserts the low `bits` bits of `value` before the next input byte.
    pub(super) fn prime(&mut self, bits: u8, value: u8) -> io::Result<()> {
        // SAFETY: initialised stream; 0..=7 bits is within inflatePrime's limit of 16.
        match unsafe { z::inflatePrime(self.strm.as_mut(), c_int::from(bits), value.into()) } {
            Z_OK => Ok(()),
            rc => Err(zerr("inflatePrime", rc)),
        }
    }

    /// Installs `dict` (at most 32 KiB) as the history preceding the next output.
    pub(super) fn set_dictionary(&mut self, dict: &[u8]) -> io::Result<()> {
        let len = c_uint::try_from(dict.len()).map_err(|_| zerr("dictionary size", -1))?;
        // SAFETY: initialised stream; `dict` is valid for `len` bytes and only read.
        match unsafe { z::inflateSetDictionary(self.strm.as_mut(), dict.as_ptr(), len) } {
            Z_OK => Ok(()),
            rc => Err(zerr("inflateSetDictionary", rc)),
        }
    }

    /// The current history window (the last up-to-32 KiB of output of this DEFLATE stream).
    pub(super) fn dictionary(&self) -> io::Result<Vec<u8>> {
        let mut len: c_uint = 0;
        // SAFETY: initialised stream; a null dictionary pointer only asks for the length.
        let rc = unsafe { z::inflateGetDictionary(self.strm.as_ref(), std::ptr::null_mut(), &mut len) };
        if rc != Z_OK {
            return Err(zerr("inflateGetDictionary", rc));
        }
        let mut buf = vec![0u8; len as usize];
        let mut got: c_uint = 0;
        // SAFETY: `buf` has room for the `len` bytes the window holds, and the window does
        // not change between the two calls (we hold `&self`).
        let rc = unsafe { z::inflateGetDictionary(self.strm.as_ref(), buf.as_mut_ptr(), &mut got) };
        if rc != Z_OK || got != len {
            return Err(zerr("inflateGetDictionary", rc));
        }
        Ok(buf)
    }

    /// One `inflate` call from `input` into `out`.
    pub(super) fn inflate(&mut self, input: &[u8], out: &mut [u8], flush: c_int) -> Inflated {
        let avail_in = input.len().min(c_uint::MAX as usize) as c_uint;
        let avail_out = out.len().min(c_uint::MAX as usize) as c_uint;
        let s = self.strm.as_mut();
        s.next_in = input.as_ptr();
        s.avail_in = avail_in;
        s.next_out = out.as_mut_ptr();
        s.avail_out = avail_out;
        // SAFETY: initialised stream; next_in/next_out point at live buffers of the given
        // sizes for the duration of the call, and are cleared right after.
        let code = unsafe { z::inflate(s, flush) };
        let consumed = (avail_in - s.avail_in) as usize;
        let produced = (avail_out - s.avail_out) as usize;
        s.next_in = std::ptr::null();
        s.avail_in = 0;
        s.next_out = std::ptr::null_mut();
        s.avail_out = 0;
        Inflated {
            code,
            consumed,
            produced,
            data_type: s.data_type,
        }
    }

    /// zlib's message for the last error, if any.
    pub(super) fn message(&self) -> Option<String> {
        if self.strm.msg.is_null() {
            return None;
        }
        // SAFETY: a non-null `msg` points at one of zlib-rs's static NUL-terminated strings.
        let s = unsafe { CStr::from_ptr(self.strm.msg) };
        Some(s.to_string_lossy().into_owned())
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised by `new_raw` and is not used afterwards.
        unsafe {
            z::inflateEnd(self.strm.as_mut());
        }
    }
}
