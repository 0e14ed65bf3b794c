//! A data loader whose batches come in the same order on every run.
//!
//! burn-train 0.21's multi-threaded loader hands batches over in the order its workers
//! finish them, so two runs with the same seed train on different batch orders and end with
//! different weights. Here batch `k` of an epoch is built by worker `k % workers` and handed
//! over `k`-th: the workers still build batches in parallel, a few ahead of the training
//! step, but the order is a function of the seed and the epoch alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::Dataset;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Batches of `batch_size` items of a dataset, in an order that depends only on the seed and
/// the epoch (the how-manyth call of `iter`), built by `workers` threads.
pub struct OrderedLoader<B: Backend, I, O> {
    dataset: Arc<dyn Dataset<I>>,
    batcher: Arc<dyn Batcher<B, I, O>>,
    batch_size: usize,
    shuffle: Option<u64>,
    workers: usize,
    device: B::Device,
    /// The epoch of the next `iter` call.
    epoch: Arc<AtomicUsize>,
    /// Reseed the backend's generator before each batch from this seed, the epoch and the batch.
    reseed: Option<u64>,
    /// Batches of the next epoch that are left out (a run resumed mid-epoch has trained them).
    skip: Arc<AtomicUsize>,
}

impl<B: Backend, I, O> OrderedLoader<B, I, O>
where
    I: Send + Sync + Clone + 'static,
    O: Send + 'static,
{
    /// Batches of `dataset` in its own order, built by one worker on `device`.
    pub fn new(
        batcher: impl Batcher<B, I, O> + 'static,
        dataset: impl Dataset<I> + 'static,
        batch_size: usize,
        device: B::Device,
    ) -> Self {
        Self {
            dataset: Arc::new(dataset),
            batcher: Arc::new(batcher),
            batch_size: batch_size.max(1),
            shuffle: None,
            workers: 1,
            device,
            epoch: Arc::new(AtomicUsize::new(0)),
            reseed: None,
            skip: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Shuffles the items every epoch, by a permutation drawn from `seed` and the epoch.
    pub fn shuffle(self, seed: u64) -> Self {
        Self {
            shuffle: Some(seed),
            ..self
        }
    }

    /// Seeds the backend's random generator (dropout's masks) before every batch is handed
    /// over, on the training thread, from `seed`, the epoch and the batch alone: a run resumed
    /// at any step draws the masks an unbroken run draws there, instead of continuing from
    /// its fresh start's state. Only for the training loader: validation draws nothing.
    pub fn reseed_backend(self, seed: u64) -> Self {
        Self {
            reseed: Some(seed),
            ..self
        }
    }

    /// Builds batches on `workers` threads (at least one).
    pub fn workers(self, workers: usize) -> Self {
        Self {
            workers: workers.max(1),
            ..self
        }
    }

    /// Starts at epoch `epoch` (0-based): a resumed run sees the data orders of the epochs it
    /// has still to train, not the first ones again.
    pub fn starting_epoch(self, epoch: usize) -> Self {
        self.epoch.store(epoch, Ordering::SeqCst);
        self
    }

    /// Leaves out the first `batches` batches of the first epoch: a run resumed in the middle
    /// of an epoch goes on with the batches it had not trained, in the epoch's order.
    pub fn skipping(self, batches: usize) -> Self {
        self.skip.store(batches, Ordering::SeqCst);
        self
    }

    /// The items of epoch `epoch`, in order.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if let Some(seed) = self.shuffle {
            let stream = epoch_stream(seed, epoch);
            order.shuffle(&mut StdRng::seed_from_u64(stream));
        }
        order
    }

    fn with(&self, dataset: Arc<dyn Dataset<I>>, device: B::Device) -> Self {
        Self {
            dataset,
            batcher: self.batcher.clone(),
            batch_size: self.batch_size,
            shuffle: self.shuffle,
            workers: self.workers,
            device,
            epoch: Arc::new(AtomicUsize::new(self.epoch.load(Ordering::SeqCst))),
            reseed: self.reseed,
            skip: Arc::new(AtomicUsize::new(self.skip.load(Ordering::SeqCst))),
        }
    }
}

/// The random stream of `epoch` of a run seeded with `seed`.
fn epoch_stream(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The backend's seed for batch `batch` of `epoch` of a run seeded with `seed`.
fn batch_stream(seed: u64, epoch: usize, batch: usize) -> u64 {
    epoch_stream(seed, epoch)
        .wrapping_add(1)
        .wrapping_add((batch as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9))
}

impl<B: Backend, I, O> DataLoader<B, O> for OrderedLoader<B, I, O>
where
    I: Send + Sync + Clone + 'static,
    O: Send + 'static,
{
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<O> + 'a> {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst);
        let order = self.order(epoch);
        let all: Vec<Vec<usize>> = order
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        let skipped = self.skip.swap(0, Ordering::SeqCst).min(all.len());
        let done: usize = all[..skipped].iter().map(Vec::len).sum();
        let total = order.len();
        let batches: Arc<Vec<Vec<usize>>> = Arc::new(all[skipped..].to_vec());
        let workers = self.workers.min(batches.len()).max(1);
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for worker in 0..workers {
            // One batch waiting and one being built per worker.
            let (sender, receiver) = sync_channel::<O>(1);
            let batches = batches.clone();
            let dataset = self.dataset.clone();
            let batcher = self.batcher.clone();
            let device = self.device.clone();
            let handle = std::thread::Builder::new()
                .name(format!("loader-{worker}"))
                .spawn(move || {
                    for batch in batches.iter().skip(worker).step_by(workers) {
                        let items = batch
                            .iter()
                            .map(|&i| dataset.get(i).expect("an index below the dataset's length"))
                            .collect();
                        if sender.send(batcher.batch(items, &device)).is_err() {
                            // The epoch was cut short: nobody wants the rest.
                            return;
                        }
                    }
                })
                .expect("cannot start a data-loading thread");
            receivers.push(receiver);
            handles.push(Some(handle));
        }
        Box::new(OrderedIter {
            sizes: batches.iter().map(Vec::len).collect(),
            receivers,
            handles,
            next: 0,
            processed: done,
            total,
            reseed: self.reseed.map(|seed| Reseed::<B> {
                seed,
                epoch,
                first: skipped,
                device: self.device.clone(),
            }),
        })
    }

    fn num_items(&self) -> usize {
        self.dataset.len()
    }

    fn to_device(&self, device: &B::Device) -> Arc<dyn DataLoader<B, O>> {
        Arc::new(self.with(self.dataset.clone(), device.clone()))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B, O>> {
        let part =
            burn::data::dataset::transform::PartialDataset::new(self.dataset.clone(), start, end);
        Arc::new(self.with(Arc::new(part), self.device.clone()))
    }
}

/// Where the backend's seed of each batch comes from.
struct Reseed<B: Backend> {
    seed: u64,
    epoch: usize,
    /// The epoch's batch number of the first batch handed over.
    first: usize,
    device: B::Device,
}

struct OrderedIter<B: Backend, O> {
    /// Items in each batch handed over.
    sizes: Vec<usize>,
    /// Worker `w` sends batches `w`, `w + workers`, ... in order.
    receivers: Vec<Receiver<O>>,
    handles: Vec<Option<JoinHandle<()>>>,
    next: usize,
    /// Items of the epoch handed over (or skipped).
    processed: usize,
    /// Items of the whole epoch.
    total: usize,
    reseed: Option<Reseed<B>>,
}

impl<B: Backend, O> Iterator for OrderedIter<B, O> {
    type Item = O;

    fn next(&mut self) -> Option<O> {
        if self.next >= self.sizes.len() {
            return None;
        }
        let worker = self.next % self.receivers.len();
        match self.receivers[worker].recv() {
            Ok(batch) => {
                if let Some(r) = &self.reseed {
                    B::seed(
                        &r.device,
                        batch_stream(r.seed, r.epoch, r.first + self.next),
                    );
                }
                self.processed += self.sizes[self.next];
                self.next += 1;
                Some(batch)
            }
            // The worker stopped early: it panicked building a batch. Pass its panic on.
            Err(_) => match self.handles[worker].take().map(JoinHandle::join) {
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                _ => panic!("data-loading thread {worker} stopped before its last batch"),
            },
        }
    }
}

impl<B: Backend, O> DataLoaderIterator<O> for OrderedIter<B, O> {
    fn progress(&self) -> Progress {
        Progress::new(self.processed, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::data::dataset::InMemDataset;

    /// Sleeps longer on some items so that, built in parallel, batches finish out of order.
    #[derive(Clone)]
    struct SlowOnEven;

    impl Batcher<NdArray, usize, Vec<usize>> for SlowOnEven {
        fn batch(
            &self,
            items: Vec<usize>,
            _device: &burn::backend::ndarray::NdArrayDevice,
        ) -> Vec<usize> {
            if items[0].is_multiple_of(2) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            items
        }
    }

    fn epochs(loader: &OrderedLoader<NdArray, usize, Vec<usize>>, n: usize) -> Vec<Vec<usize>> {
        (0..n)
            .flat_map(|_| loader.iter().collect::<Vec<_>>())
            .collect()
    }

    fn loader(workers: usize) -> OrderedLoader<NdArray, usize, Vec<usize>> {
        let items = InMemDataset::new((0..40).collect::<Vec<usize>>());
        OrderedLoader::new(SlowOnEven, items, 3, Default::default())
            .shuffle(7)
            .workers(workers)
    }

    #[test]
    fn batches_come_in_the_same_order_whatever_the_number_of_workers() {
        let one = epochs(&loader(1), 3);
        assert_eq!(one, epochs(&loader(4), 3));
        assert_eq!(one, epochs(&loader(3), 3));
        // Every item once an epoch, in batches of 3 (the last one shorter).
        let first: Vec<usize> = one[..14].concat();
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..40).collect::<Vec<_>>());
        assert_eq!(one[13].len(), 1);
    }

    #[test]
    fn every_epoch_has_its_own_order_and_a_resumed_loader_continues_it() {
        let all = epochs(&loader(2), 3);
        let (first, second) = (all[..14].concat(), all[14..28].concat());
        assert_ne!(first, second);
        let resumed = epochs(&loader(2).starting_epoch(1), 2);
        assert_eq!(resumed, all[14..].to_vec());
    }

    #[test]
    fn a_loader_resumed_mid_epoch_skips_the_batches_trained_and_counts_them_done() {
        let all = epochs(&loader(2), 2);
        let resumed = loader(2).starting_epoch(1).skipping(5);
        let mut iter = resumed.iter();
        assert_eq!(iter.progress().items_processed, 15);
        assert_eq!(iter.next().as_ref(), Some(&all[14 + 5]));
        drop(iter);
        // Only the first epoch is cut; the next one is whole.
        assert_eq!(resumed.iter().count(), 14);
    }

    #[test]
    fn progress_counts_the_items_handed_over() {
        let loader = loader(2);
        let mut iter = loader.iter();
        assert_eq!(iter.progress().items_total, 40);
        iter.next();
        iter.next();
        assert_eq!(iter.progress().items_processed, 6);
    }

    #[test]
    fn a_panic_while_building_a_batch_reaches_the_training_thread() {
        #[derive(Clone)]
        struct Fails;
        impl Batcher<NdArray, usize, Vec<usize>> for Fails {
            fn batch(
                &self,
                items: Vec<usize>,
                _: &burn::backend::ndarray::NdArrayDevice,
            ) -> Vec<usize> {
                assert!(!items.contains(&5), "item 5 is broken");
                items
            }
        }
        let items = InMemDataset::new((0..10).collect::<Vec<usize>>());
        let loader = OrderedLoader::new(Fails, items, 2, Default::default()).workers(2);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            loader.iter().count();
        }));
        let payload = caught.expect_err("the batch holding item 5 panics");
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        assert_eq!(message.as_deref(), Some("item 5 is broken"));
    }
}
