//! Reading an execution's input through its pipeline: records at hand in
//! one GIL hold, keys read ahead on a helper thread (Redis lock) while the
//! steps run (GIL), input held back while too many records wait.

use super::*;

pub(super) type Batch = Result<Option<Vec<Record>>, gears_core::Error>;

/// Pushes one batch, then waits (without the GIL) while the pipeline holds
/// input back for too many waiting records.
pub(super) fn feed(driver: &Driver, pipe: &mut Pipeline, batch: Vec<Record>) {
    driver.in_gil(|py| {
        pipe.push_batch(batch);
        pipe.absorb();
        while pipe.blocked() {
            let inbox = pipe.inbox().clone();
            py.allow_threads(|| inbox.wait());
            pipe.absorb();
        }
    })
}

/// Reads the whole input through the pipeline. `None` if the execution was
/// aborted before it started.
pub(super) fn drive(
    exec: &Arc<Execution>,
    plan: &Plan,
    mut reader: Box<dyn Reader>,
    may_wait: bool,
) -> Option<(Pipeline, Arc<Driver>, Duration)> {
    if !exec.start() {
        Python::with_gil(|_py| drop(reader));
        return None;
    }
    let driver = Arc::new(Driver::default());
    driver.here();
    let mut pipe = Pipeline::new(plan, exec.abort_flag());
    if crate::runtime::engine().profile.load(Ordering::Relaxed) {
        pipe = pipe.timed();
    }
    pipe.allow_waiting(may_wait);
    let (d, inbox) = (driver.clone(), pipe.inbox().clone());
    exec.set_interrupter(Some(Box::new(move || {
        d.interrupt();
        inbox.abort();
    })));
    if reader.in_memory() {
        // Records at hand (triggers, events): one GIL hold for the whole
        // input, so a sync run on the main thread waits for the GIL once.
        // Nothing blocks here (this may be the Redis main thread, which the
        // waiting records may need): input held back for too many waiting
        // records is let in as they are answered, wherever that happens.
        driver.in_gil(|_py| {
            while !pipe.input_closed() {
                match reader.next_batch() {
                    Ok(Some(b)) => {
                        pipe.push_batch(b);
                        pipe.absorb();
                    }
                    Ok(None) => break,
                    Err(e) => {
                        pipe.errors.push(e.to_string());
                        break;
                    }
                }
            }
            drop(reader);
        });
        return Some((pipe, driver, Duration::ZERO));
    }
    let mut consume = |next: &mut dyn FnMut() -> Batch| {
        while !pipe.input_closed() {
            match next() {
                Ok(Some(b)) => feed(&driver, &mut pipe, b),
                Ok(None) => break,
                Err(e) => {
                    pipe.errors.push(e.to_string());
                    break;
                }
            }
        }
    };
    let mut read = Duration::ZERO;
    if reader.prefetch() {
        // Read ahead on a helper thread (Redis lock) while this one runs the
        // steps (GIL). The bounded channel keeps at most two batches waiting;
        // dropping the receiver stops the helper.
        let (tx, rx) = crossbeam_channel::bounded::<Batch>(2);
        let reader_ref = &mut reader;
        std::thread::scope(|s| {
            let helper = s.spawn(move || {
                let mut spent = Duration::ZERO;
                loop {
                    let t = Instant::now();
                    let batch = reader_ref.next_batch();
                    spent += t.elapsed();
                    let last = !matches!(batch, Ok(Some(_)));
                    if tx.send(batch).is_err() || last {
                        return spent;
                    }
                }
            });
            consume(&mut || rx.recv().unwrap_or(Ok(None)));
            drop(rx);
            read = helper.join().unwrap_or_default();
        });
    } else {
        consume(&mut || {
            let t = Instant::now();
            let batch = reader.next_batch();
            read += t.elapsed();
            batch
        });
    }
    Python::with_gil(|_py| drop(reader));
    Some((pipe, driver, read))
}
