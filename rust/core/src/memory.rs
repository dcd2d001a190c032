//! Transparent huge pages for large arrays, and prefetching for random access into them.
//!
//! A fresh output of tens of megabytes costs one page fault per 4 KiB page on first write, and
//! sampling rows at random slots costs a TLB miss per row, so both gain from 2 MiB pages. Linux kernels set to `transparent_hugepage=madvise` (a common default) back
//! a region with 2 MiB pages only on request. NumPy requests them for arrays of 4 MiB and more,
//! and this module does the same for the store. Elsewhere it does nothing.

/// Smallest array, in bytes, worth asking huge pages for.
const MIN_BYTES: usize = 4 << 20;

/// Ask the kernel to back `values` with huge pages. Call it before the pages are first written.
pub(crate) fn advise_huge_pages<T>(values: &mut [T]) {
    let bytes = std::mem::size_of_val(values);
    if bytes < MIN_BYTES {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let page = 4096;
        let start = values.as_mut_ptr() as usize;
        let aligned = start.div_ceil(page) * page;
        let length = (start + bytes).saturating_sub(aligned) / page * page;
        // SAFETY: the range lies inside the allocation of `values`, is page-aligned, and
        // MADV_HUGEPAGE only changes how the kernel backs it, never its contents. A failure
        // (for example a kernel without huge pages) leaves ordinary pages, so it is ignored.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, length, libc::MADV_HUGEPAGE);
        }
    }
}

/// Ask the CPU to start loading the cache line of `value`. A hint only: it never faults and
/// does nothing on targets without a stable prefetch instruction.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint that neither faults nor changes memory, and `value` is a
    // valid reference.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
