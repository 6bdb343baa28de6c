//! RG.PYSTATS: how much memory Python holds, and where it comes from.
//!
//! With `OverridePythonAllocators 1` (1.2's default) the interpreter's MEM
//! and OBJ allocators are wrapped before it starts: each block gets a
//! 16-byte header holding its size and three counters follow the bytes.
//! Small blocks stay with pymalloc, whose arenas come from the host's
//! [`Allocator`]; larger blocks come from the host's allocator directly.
//! The module passes Redis's (`RedisModule_Alloc`...), so that Redis's
//! `used_memory`, `INFO memory` and `maxmemory` see what Python holds.
//! The RAW domain is left alone: C code may hand its blocks to `free()`.
//! With 0 nothing is wrapped, the counters stay at zero and Python's memory
//! is invisible to Redis.

use pyo3::ffi::{PyMemAllocatorDomain, PyMemAllocatorEx, PyObjectArenaAllocator};
use std::os::raw::c_void;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

/// An allocator of the host (thread-safe, callable without the GIL or any
/// lock): where Python's large blocks and pymalloc's arenas come from.
#[derive(Clone, Copy)]
pub struct Allocator {
    pub malloc: unsafe extern "C" fn(usize) -> *mut c_void,
    pub calloc: unsafe extern "C" fn(usize, usize) -> *mut c_void,
    pub realloc: unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void,
    pub free: unsafe extern "C" fn(*mut c_void),
}

impl Allocator {
    /// The C library's allocator (tests, and hosts without their own).
    pub fn system() -> Allocator {
        Allocator {
            malloc: libc::malloc,
            calloc: libc::calloc,
            realloc: libc::realloc,
            free: libc::free,
        }
    }
}

static HOST: OnceLock<Allocator> = OnceLock::new();

fn host() -> Allocator {
    // Set by `install` before any block is allocated (these functions are
    // called from C: they never unwind).
    HOST.get().copied().unwrap_or_else(Allocator::system)
}

/// Blocks up to this size (header included) stay with pymalloc, as
/// CPython itself does (its small-object threshold).
const SMALL: usize = 512;

fn is_small(size: usize) -> bool {
    size + HEADER <= SMALL
}

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
    let base = if is_small(size) {
        let Some(m) = below(ctx).malloc else {
            return std::ptr::null_mut();
        };
        m(below(ctx).ctx, total)
    } else {
        // SAFETY: the host's malloc, callable from any thread.
        unsafe { (host().malloc)(total) }
    };
    // SAFETY: a block of `total` bytes, or null.
    unsafe { finish(base, size) }
}

extern "C" fn calloc(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    let Some(size) = nelem.checked_mul(elsize) else {
        return std::ptr::null_mut();
    };
    let Some(total) = size.checked_add(HEADER) else {
        return std::ptr::null_mut();
    };
    let base = if is_small(size) {
        let Some(c) = below(ctx).calloc else {
            return std::ptr::null_mut();
        };
        c(below(ctx).ctx, 1, total)
    } else {
        // SAFETY: the host's calloc, callable from any thread.
        unsafe { (host().calloc)(1, total) }
    };
    // SAFETY: a zeroed block of `total` bytes, or null.
    unsafe { finish(base, size) }
}

/// Frees a block under our header, to whichever allocator made it.
///
/// # Safety
/// `base` is the start of a live block of ours of `size` payload bytes.
unsafe fn release(ctx: *mut c_void, base: *mut c_void, size: usize) {
    if is_small(size) {
        if let Some(f) = below(ctx).free {
            f(below(ctx).ctx, base);
        }
    } else {
        (host().free)(base);
    }
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
    let moved = match (is_small(old), is_small(size)) {
        (true, true) => {
            let Some(r) = below(ctx).realloc else {
                return std::ptr::null_mut();
            };
            r(below(ctx).ctx, base, total)
        }
        // SAFETY: a live block of the host's.
        (false, false) => unsafe { (host().realloc)(base, total) },
        // Between the two allocators: copy.
        _ => {
            let fresh = malloc(ctx, size);
            if fresh.is_null() {
                // The old block is still there, still counted.
                return fresh;
            }
            // SAFETY: both blocks hold at least `min(old, size)` payload
            // bytes and do not overlap; the old one is freed once.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr as *const u8, fresh as *mut u8, old.min(size));
                freed(old);
                release(ctx, base, old);
            }
            return fresh;
        }
    };
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
    unsafe {
        let (base, size) = header(ptr);
        freed(size);
        release(ctx, base, size);
    }
}

extern "C" fn arena_alloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the host's malloc, callable from any thread.
    unsafe { (host().malloc)(size) }
}

extern "C" fn arena_free(_ctx: *mut c_void, ptr: *mut c_void, _size: usize) {
    // SAFETY: an arena `arena_alloc` made.
    unsafe { (host().free)(ptr) }
}

/// Wraps the MEM and OBJ allocators and gives pymalloc its arenas from
/// `host`. Call before the interpreter starts (blocks allocated before
/// would have no header); once.
pub fn install(host: Allocator) {
    if HOST.set(host).is_err() {
        return;
    }
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
    let mut arenas = PyObjectArenaAllocator {
        ctx: std::ptr::null_mut(),
        alloc: Some(arena_alloc),
        free: Some(arena_free),
    };
    // SAFETY: before the interpreter starts, no arena exists yet; CPython
    // copies the struct.
    unsafe { pyo3::ffi::PyObject_SetArenaAllocator(&mut arenas) };
}
