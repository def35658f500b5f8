//! The operating system's random generator as a `CryptoRng`.

use getrandom::SysRng;
use rand_core::UnwrapErr;

/// A handle to the OS generator. A failure of the OS generator is not
/// recoverable (no safe key can be made without it), so it panics.
pub fn system() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

/// Fills `buf` with random bytes from the OS.
pub fn fill(buf: &mut [u8]) {
    rand_core::Rng::fill_bytes(&mut system(), buf);
}
