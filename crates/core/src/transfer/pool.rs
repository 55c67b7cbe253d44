//! The process-wide pool of receive buffers: the memory budget for bytes
//! received and not yet written. A stream copies each body chunk into a
//! pool buffer and lets go of the chunk at once, so the HTTP client reuses
//! its one read buffer per connection; full buffers travel to the writer
//! and come back to the pool after `pwrite`. Memory is therefore bounded by
//! the pool plus one read buffer per connection, whatever the number of
//! files, connections or the file size.

use std::sync::{Arc, Mutex};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// Equal-sized buffers, at most `count` in use at once.
#[derive(Debug)]
pub(crate) struct BufferPool {
    size: usize,
    permits: Arc<Semaphore>,
    free: Mutex<Vec<Vec<u8>>>,
}

/// A buffer taken from the pool; it goes back when dropped.
#[derive(Debug)]
pub(crate) struct PoolBuf {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
    _permit: OwnedSemaphorePermit,
}

impl BufferPool {
    /// A pool of `budget / size` buffers of `size` bytes (at least one).
    pub(crate) fn new(budget: usize, size: usize) -> Arc<Self> {
        let size = size.max(4096);
        let count = (budget / size).clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            size,
            permits: Arc::new(Semaphore::new(count)),
            free: Mutex::new(Vec::new()),
        })
    }

    /// Wait for a buffer. Buffers are allocated on first use and reused.
    pub(crate) async fn take(self: &Arc<Self>) -> Result<PoolBuf, AcquireError> {
        let permit = self.permits.clone().acquire_owned().await?;
        // A poisoned list only means a panic during a push or pop; the
        // buffers in it are still plain memory.
        let recycled = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let buf = recycled.unwrap_or_else(|| Vec::with_capacity(self.size));
        Ok(PoolBuf {
            buf,
            pool: self.clone(),
            _permit: permit,
        })
    }
}

impl PoolBuf {
    /// The bytes filled so far.
    pub(crate) fn filled(&self) -> &[u8] {
        &self.buf
    }

    /// Copy as much of `data` as fits; returns how many bytes were taken.
    pub(crate) fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.pool.size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        n
    }

    /// Whether the buffer is full.
    pub(crate) fn is_full(&self) -> bool {
        self.buf.len() >= self.pool.size
    }

    /// Whether nothing was filled.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        self.pool
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn buffers_are_bounded_and_reused() {
        let pool = BufferPool::new(3 * 4096, 4096);
        let mut a = pool.take().await.unwrap();
        assert_eq!(a.fill(&[7u8; 5000]), 4096);
        assert!(a.is_full());
        let b = pool.take().await.unwrap();
        let c = pool.take().await.unwrap();
        // The budget is spent: a fourth buffer waits until one comes back.
        let pending = tokio::spawn({
            let pool = pool.clone();
            async move { pool.take().await.map(|buf| buf.is_empty()) }
        });
        let ptr = a.filled().as_ptr();
        drop(a);
        assert!(
            pending.await.unwrap().unwrap(),
            "a recycled buffer comes back empty"
        );
        drop((b, c));
        let again = pool.take().await.unwrap();
        assert_eq!(pool.free.lock().unwrap().len(), 2);
        let _ = (again, ptr);
    }
}
