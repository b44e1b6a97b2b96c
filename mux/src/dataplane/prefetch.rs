//! A software prefetch: ask the CPU to start loading a cache line we will read soon.
//!
//! The pipeline's pass 1 prefetches each packet's flow-table bucket (and, for a SYN, its Maglev
//! slot) so that pass 2 finds them in cache: the misses of a burst overlap instead of queueing.

/// Prefetches the cache line holding `value` into all cache levels.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(unsafe_code)]
pub fn prefetch<T>(value: &T) {
    use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch is only a hint: it never faults, reads no data into the program and
    // has no architectural effect; the pointer comes from a live reference anyway. SSE (which
    // provides PREFETCHh) is part of the x86_64 baseline.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast::<i8>()) }
}

/// No stable prefetch intrinsic on this architecture: the hardware prefetchers and the
/// out-of-order core are all we have.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn prefetch<T>(_value: &T) {}
