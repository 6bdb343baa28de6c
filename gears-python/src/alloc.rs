//! RG.PYSTATS: how much memory Python holds.
//!
//! With `OverridePythonAllocators 1` (1.2's default) the interpreter's MEM
//! and OBJ allocators are wrapped before it starts: each block gets a
//! 16-byte header holding its size, the original allocators (pymalloc for
//! small objects) still do the work, and three counters follow the bytes.
//! The RAW domain is left alone: C code may hand its blocks to `free()`.
//! With 0 nothing is wrapped and the counters stay at zero.

use pyo3::ffi::{PyMemAllocatorDomain, PyMemAllocatorEx};
use std::os::raw::c_void;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

static TOTAL: AtomicU64 = AtomicU64::new(0);
static CURRENT: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

/// Keeps the blocks as aligned as the allocator below made them.
const HEADER: usize = 16;

/// Bytes Python allocated since it started, holds now, and held at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PyStats {
    pub total: u64,
    pub current: u64,
    pub peak: u64,
}

pub fn stats() -> PyStats {
    PyStats {
        total: TOTAL.load(Relaxed),
        current: CURRENT.load(Relaxed),
        peak: PEAK.load(Relaxed),
    }
}

fn allocated(n: usize) {
    TOTAL.fetch_add(n as u64, Relaxed);
    let now = CURRENT.fetch_add(n as u64, Relaxed) + n as u64;
    PEAK.fetch_max(now, Relaxed);
}

fn freed(n: usize) {
    CURRENT.fetch_sub(n as u64, Relaxed);
}

/// The allocator below ours, as `ctx` of our wrapper.
fn below(ctx: *mut c_void) -> &'static PyMemAllocatorEx {
    // SAFETY: `ctx` is the leaked allocator `install` gave this wrapper.
    unsafe { &*(ctx as *const PyMemAllocatorEx) }
}

/// Writes the header of a block of `size` bytes at `base` and returns the
/// caller's pointer.
///
/// # Safety
/// `base` is null or a block of at least `HEADER + size` bytes.
unsafe fn finish(base: *mut c_void, size: usize) -> *mut c_void {
    if base.is_null() {
        return base;
    }
    (base as *mut usize).write(size);
    allocated(size);
    (base as *mut u8).add(HEADER) as *mut c_void
}

/// The block under a pointer we handed out, and its size.
///
/// # Safety
/// `ptr` came from this wrapper and is not freed.
unsafe fn header(ptr: *mut c_void) -> (*mut c_void, usize) {
    let base = (ptr as *mut u8).sub(HEADER) as *mut c_void;
    (base, (base as *const usize).read())
}

extern "C" fn malloc(ctx: *mut c_void, size: usize) -> *mut c_void {
    let Some(total) = size.checked_add(HEADER) else {
        return std::ptr::null_mut();
    };
    let m = below(ctx).malloc.expect("a malloc below");
    // SAFETY: a block of `total` bytes, or null.
    unsafe { finish(m(below(ctx).ctx, total), size) }
}

extern "C" fn calloc(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    let Some(size) = nelem.checked_mul(elsize) else {
        return std::ptr::null_mut();
    };
    let Some(total) = size.checked_add(HEADER) else {
        return std::ptr::null_mut();
    };
    let c = below(ctx).calloc.expect("a calloc below");
    // SAFETY: a zeroed block of `total` bytes, or null.
    unsafe { finish(c(below(ctx).ctx, 1, total), size) }
}

extern "C" fn realloc(ctx: *mut c_void, ptr: *mut c_void, size: usize) -> *mut c_void {
    if ptr.is_null() {
        return malloc(ctx, size);
    }
    let Some(total) = size.checked_add(HEADER) else {
        return std::ptr::null_mut();
    };
    // SAFETY: `ptr` is a live block of ours (CPython's contract).
    let (base, old) = unsafe { header(ptr) };
    let r = below(ctx).realloc.expect("a realloc below");
    let moved = r(below(ctx).ctx, base, total);
    if moved.is_null() {
        // The old block is still there, still counted.
        return moved;
    }
    freed(old);
    // SAFETY: a block of `total` bytes.
    unsafe { finish(moved, size) }
}

extern "C" fn free(ctx: *mut c_void, ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: `ptr` is a live block of ours (CPython's contract).
    let (base, size) = unsafe { header(ptr) };
    freed(size);
    let f = below(ctx).free.expect("a free below");
    f(below(ctx).ctx, base);
}

/// Wraps the MEM and OBJ allocators. Call before the interpreter starts
/// (blocks allocated before would have no header); once.
pub fn install() {
    for domain in [
        PyMemAllocatorDomain::PYMEM_DOMAIN_MEM,
        PyMemAllocatorDomain::PYMEM_DOMAIN_OBJ,
    ] {
        let mut orig = PyMemAllocatorEx {
            ctx: std::ptr::null_mut(),
            malloc: None,
            calloc: None,
            realloc: None,
            free: None,
        };
        // SAFETY: the interpreter has not started; `orig` is a valid out
        // parameter, and the wrapper's context (the allocator below) lives
        // forever.
        unsafe {
            pyo3::ffi::PyMem_GetAllocator(domain, &mut orig);
            let below: &'static mut PyMemAllocatorEx = Box::leak(Box::new(orig));
            let mut ours = PyMemAllocatorEx {
                ctx: below as *mut PyMemAllocatorEx as *mut c_void,
                malloc: Some(malloc),
                calloc: Some(calloc),
                realloc: Some(realloc),
                free: Some(free),
            };
            pyo3::ffi::PyMem_SetAllocator(domain, &mut ours);
        }
    }
}
