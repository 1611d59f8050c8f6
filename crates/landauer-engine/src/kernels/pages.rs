//! Weight and KV-cache bytes on transparent huge pages (Linux).
//!
//! A decode step reads every weight once: ~100 MB for the default model, which in 4 KiB pages
//! is ~25,000 page translations a step, more than the TLB holds; each row's KV cache is read
//! whole every step too. Linux backs memory with 2 MiB pages where the program asks for them
//! (`madvise(MADV_HUGEPAGE)`; `madvise` is the transparent-huge-page setting Debian and most
//! distributions ship). Most of a small model's matrices and cache layers are under 2 MiB, so
//! on allocations of their own they could not use such pages: [`Bytes::zeroed`] packs them
//! into shared 32 MiB regions, 2 MiB-aligned and advised before any byte is touched, each
//! unmapped when the last buffer in it is dropped.
//!
//! Written here because no crate ships this: the allocator crates that use huge pages replace
//! the whole program's allocator. `LANDAUER_HUGE_PAGES=0` turns it off (ordinary heap
//! buffers), and elsewhere than Linux the buffers are ordinary heap buffers too.
//!
//! ```
//! use landauer_engine::kernels::pages::Bytes;
//!
//! let mut b = Bytes::zeroed(1 << 20);
//! assert!(b.iter().all(|&x| x == 0));
//! b[7] = 42;
//! assert_eq!(b.clone()[7], 42);
//! ```

use std::ops::{Deref, DerefMut};

/// Buffers smaller than this stay on the heap (tiny test models, biases, norms).
const MIN_LEN: usize = 64 << 10;

/// True unless `LANDAUER_HUGE_PAGES=0` (read once).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("LANDAUER_HUGE_PAGES").map_or(true, |v| v.trim() != "0"))
}

/// A zero-initialised byte buffer, in a huge-page region where one could be had.
pub struct Bytes(Inner);

enum Inner {
    Heap(Vec<u8>),
    #[cfg(target_os = "linux")]
    Region {
        /// Keeps the region mapped while this buffer lives.
        _region: std::sync::Arc<linux::Region>,
        ptr: *mut u8,
        len: usize,
    },
}

// SAFETY: a `Region` buffer owns its byte range alone (the arena hands every range out once),
// so it is shared and sent like a `Vec<u8>`: reads through `&self`, writes through `&mut self`.
unsafe impl Send for Bytes {}
unsafe impl Sync for Bytes {}

impl Bytes {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        #[cfg(target_os = "linux")]
        if len >= MIN_LEN && enabled() {
            if let Some((region, ptr)) = linux::take(len) {
                return Bytes(Inner::Region {
                    _region: region,
                    ptr,
                    len,
                });
            }
        }
        Bytes(Inner::Heap(vec![0u8; len]))
    }

    /// A copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut b = Self::zeroed(bytes.len());
        b.copy_from_slice(bytes);
        b
    }

    /// True when the buffer lies in a region advised for huge pages (whether the kernel
    /// granted them shows in `/proc/self/smaps`, `AnonHugePages`).
    pub fn in_huge_page_region(&self) -> bool {
        !matches!(self.0, Inner::Heap(_))
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Inner::Heap(v) => v,
            #[cfg(target_os = "linux")]
            // SAFETY: `ptr..ptr + len` lies in the mapped region `_region` keeps alive.
            Inner::Region { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }
}

impl DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            Inner::Heap(v) => v,
            #[cfg(target_os = "linux")]
            // SAFETY: as in `deref`, and no other buffer holds this range.
            Inner::Region { ptr, len, .. } => unsafe { std::slice::from_raw_parts_mut(*ptr, *len) },
        }
    }
}

impl Clone for Bytes {
    fn clone(&self) -> Self {
        Self::from_slice(self)
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Bytes({} bytes{})",
            self.len(),
            if self.in_huge_page_region() {
                ", huge-page region"
            } else {
                ""
            }
        )
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::{Arc, Mutex, Weak};

    const HUGE: usize = 2 << 20;
    const REGION: usize = 32 << 20;
    /// Each buffer starts on a cache line.
    const ALIGN: usize = 64;

    /// An anonymous mapping whose `len` bytes from `base` are 2 MiB-aligned and advised for
    /// huge pages; unmapped on drop.
    pub(super) struct Region {
        map: *mut libc::c_void,
        map_len: usize,
        base: *mut u8,
        len: usize,
    }

    // SAFETY: the mapping is plain memory; `Bytes` hands out disjoint ranges of it.
    unsafe impl Send for Region {}
    unsafe impl Sync for Region {}

    impl Region {
        fn new(len: usize) -> Option<Self> {
            let len = len.div_ceil(HUGE) * HUGE;
            let map_len = len + HUGE;
            // SAFETY: a fresh private anonymous mapping; checked for failure.
            let map = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    map_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if map == libc::MAP_FAILED {
                return None;
            }
            let base = (map as usize).div_ceil(HUGE) * HUGE;
            // A refusal (no THP in this kernel) leaves ordinary pages: still correct memory.
            // SAFETY: `base..base + len` lies inside the mapping.
            unsafe { libc::madvise(base as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
            Some(Self {
                map,
                map_len,
                base: base as *mut u8,
                len,
            })
        }
    }

    impl Drop for Region {
        fn drop(&mut self) {
            // SAFETY: unmaps exactly the mapping `new` made, once.
            unsafe { libc::munmap(self.map, self.map_len) };
        }
    }

    /// The region being filled and how much of it is taken. Held weakly: a region whose
    /// buffers are all dropped is unmapped, and the next buffer starts a new one.
    static ARENA: Mutex<Option<(Weak<Region>, usize)>> = Mutex::new(None);

    /// `len` untouched (so zero) bytes of a region: ranges are never reused. Buffers over
    /// half a region get one of their own.
    pub(super) fn take(len: usize) -> Option<(Arc<Region>, *mut u8)> {
        if len > REGION / 2 {
            let r = Arc::new(Region::new(len)?);
            let ptr = r.base;
            return Some((r, ptr));
        }
        let mut arena = ARENA.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((weak, used)) = arena.as_mut() {
            if let Some(r) = weak.upgrade() {
                let start = used.div_ceil(ALIGN) * ALIGN;
                if start + len <= r.len {
                    *used = start + len;
                    // SAFETY: `start + len <= r.len`: inside the region.
                    let ptr = unsafe { r.base.add(start) };
                    return Some((r, ptr));
                }
            }
        }
        let r = Arc::new(Region::new(REGION)?);
        *arena = Some((Arc::downgrade(&r), len));
        let ptr = r.base;
        Some((r, ptr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zero_disjoint_and_outlive_each_other() {
        // Sizes below, inside and above a region's share; written with distinct bytes, then
        // some dropped, so that later buffers come from regions still holding live ones.
        let sizes = [100, 70_000, 553_000, 3 << 20, 17 << 20, 65_536, 1 << 20];
        let mut live: Vec<Bytes> = Vec::new();
        for round in 0..3u8 {
            for (i, &n) in sizes.iter().enumerate() {
                let mut b = Bytes::zeroed(n);
                assert_eq!(b.len(), n);
                assert!(b.iter().all(|&x| x == 0), "{n} bytes not zeroed");
                if b.in_huge_page_region() {
                    assert_eq!(b.as_ptr() as usize % 64, 0, "buffer not cache-line aligned");
                }
                b.fill(round * 16 + i as u8 + 1);
                live.push(b);
            }
            live.retain(|b| b.len() % 2 == 0 || b.len() < 1000);
        }
        for b in &live {
            let tag = b[0];
            assert!(b.iter().all(|&x| x == tag), "a buffer was overwritten");
        }
        let c = live[1].clone();
        assert_eq!(&c[..], &live[1][..]);
        assert_ne!(c.as_ptr(), live[1].as_ptr());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn large_buffers_lie_in_advised_regions_unless_turned_off() {
        let b = Bytes::zeroed(1 << 20);
        assert_eq!(b.in_huge_page_region(), enabled());
        assert!(!Bytes::zeroed(100).in_huge_page_region());
    }
}
