//! The process allocator: the system allocator, except that very large allocations are
//! served by anonymous `mmap(MAP_NORESERVE)` mappings.
//!
//! Why: kafka-protocol 0.18 pre-allocates `Vec::with_capacity(n)` from array lengths read off
//! the wire before decoding any element (upstream kafka-protocol-rs PRs #152/#161/#200, not
//! released). An 8-byte request claiming a 50-million-element array asks for gigabytes; the
//! system allocator refuses, and a refused allocation aborts the process, which no
//! `catch_unwind` can stop: any client could take the broker down. A `MAP_NORESERVE` mapping
//! only reserves address space, so such an allocation succeeds without using memory, the
//! decoder then fails on the short buffer and the mapping is released. Genuine large
//! allocations still work: pages are backed as they are touched.
//!
//! Remove this module once kafka-protocol bounds its pre-allocation.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations of at least this many bytes are mapped lazily.
const LAZY_THRESHOLD: usize = 1 << 30;
/// mmap returns page-aligned memory; larger alignments go to the system allocator.
const PAGE: usize = 4096;

/// The allocator described in the module docs.
#[derive(Debug)]
pub struct LazyLargeAllocator;

fn lazy(layout: &Layout) -> bool {
    layout.size() >= LAZY_THRESHOLD && layout.align() <= PAGE
}

// SAFETY: every method forwards to `System` except for layouts `lazy()` accepts, which are
// served by a fresh private anonymous mapping of exactly `layout.size()` bytes (page
// aligned, zero filled) and released with `munmap` of the same size. A layout is lazy or not
// by its size and alignment alone, so `dealloc` and `realloc` always take the path the
// allocation took.
unsafe impl GlobalAlloc for LazyLargeAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !lazy(&layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: a new anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if lazy(&layout) {
            // SAFETY: anonymous mappings are zero filled.
            unsafe { self.alloc(layout) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if lazy(&layout) {
            // SAFETY: `ptr` came from our mmap of `layout.size()` bytes.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !lazy(&layout) && !lazy(&new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate, copy the overlap, free the old block: each with its own path.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bogus_huge_capacity_does_not_abort() {
        // What the decoder does with a forged array length: reserve, then fail early.
        let v: Vec<[u8; 72]> = Vec::with_capacity(2_000_000_000);
        assert!(v.capacity() >= 2_000_000_000);
        drop(v);
        let mut grown: Vec<u8> = Vec::with_capacity(1 << 30);
        grown.extend_from_slice(&[1, 2, 3]);
        grown.reserve(2 << 30);
        assert_eq!(&grown[..3], &[1, 2, 3], "realloc across the threshold keeps the data");
    }
}
