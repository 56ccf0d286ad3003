//! The shard's local executor: `!Send` futures polled on the shard that spawned them.
//!
//! Owns the task slab (index + generation keys) and the ready queue. Invariants: a task is
//! in the ready queue at most once (`queued`); a task's future is taken out of the slab
//! while it is polled, so a task may spawn, wake or cancel others (or itself) re-entrantly;
//! a waker used on another thread sends the wake through the owning shard's mailbox.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::runtime::{Mail, Remote};

/// A key into the task slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskKey {
    pub(crate) index: u32,
    pub(crate) gen: u32,
}

type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

struct TaskSlot {
    gen: u32,
    future: Option<BoxFuture>,
    waker: Option<Waker>,
    queued: bool,
    live: bool,
}

#[derive(Default)]
pub(crate) struct Tasks {
    slots: Vec<TaskSlot>,
    free: Vec<u32>,
    pub(crate) ready: std::collections::VecDeque<TaskKey>,
    pub(crate) live: usize,
}

struct TaskWaker {
    key: TaskKey,
    remote: Arc<Remote>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if crate::shard::current_token() == Some(self.remote.token) {
            crate::shard::wake_local(self.key);
        } else {
            // Unbounded on purpose: a lost wake-up would hang the task forever.
            let _ = self.remote.post_mail(Mail::Wake(self.key), false);
        }
    }
}

impl Tasks {
    pub(crate) fn insert(&mut self, future: BoxFuture, remote: &Arc<Remote>) -> TaskKey {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(TaskSlot {
                    gen: 0,
                    future: None,
                    waker: None,
                    queued: false,
                    live: false,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.gen = slot.gen.wrapping_add(1);
        let key = TaskKey {
            index,
            gen: slot.gen,
        };
        slot.future = Some(future);
        slot.waker = Some(Waker::from(Arc::new(TaskWaker {
            key,
            remote: remote.clone(),
        })));
        slot.queued = true;
        slot.live = true;
        self.live += 1;
        self.ready.push_back(key);
        key
    }

    pub(crate) fn wake(&mut self, key: TaskKey) {
        if let Some(slot) = self.slots.get_mut(key.index as usize) {
            if slot.gen == key.gen && slot.live && !slot.queued {
                slot.queued = true;
                self.ready.push_back(key);
            }
        }
    }

    /// Takes a ready task's future and waker out for polling.
    pub(crate) fn take_ready(&mut self) -> Option<Option<(TaskKey, BoxFuture, Waker)>> {
        let key = self.ready.pop_front()?;
        let Some(slot) = self.slots.get_mut(key.index as usize) else {
            return Some(None);
        };
        if slot.gen != key.gen || !slot.live {
            return Some(None);
        }
        slot.queued = false;
        let (Some(f), Some(w)) = (slot.future.take(), slot.waker.clone()) else {
            return Some(None);
        };
        Some(Some((key, f, w)))
    }

    /// Puts a polled, still pending future back, or frees the slot when it finished.
    pub(crate) fn put_back(&mut self, key: TaskKey, future: Option<BoxFuture>) {
        let Some(slot) = self.slots.get_mut(key.index as usize) else {
            return;
        };
        if slot.gen != key.gen {
            return;
        }
        match future {
            Some(f) => slot.future = Some(f),
            None => {
                slot.live = false;
                slot.waker = None;
                slot.gen = slot.gen.wrapping_add(1);
                self.free.push(key.index);
                self.live -= 1;
            }
        }
    }

    /// Removes every task (shutdown); the caller drops the futures outside any borrow.
    pub(crate) fn drain(&mut self) -> Vec<BoxFuture> {
        self.ready.clear();
        self.live = 0;
        self.slots
            .iter_mut()
            .filter_map(|s| {
                s.live = false;
                s.waker = None;
                s.future.take()
            })
            .collect()
    }
}

/// Polls a taken future once.
pub(crate) fn poll_task(mut f: BoxFuture, waker: &Waker) -> Option<BoxFuture> {
    let mut cx = Context::from_waker(waker);
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(()) => None,
        Poll::Pending => Some(f),
    }
}

struct JoinState<T> {
    result: Option<T>,
    waker: Option<Waker>,
    done: bool,
}

/// Awaits the output of a task started with [`crate::spawn_local`]. Dropping it detaches
/// the task (it keeps running). If the shard stops first, the handle never resolves.
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.state.borrow().done
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut st = self.state.borrow_mut();
        if let Some(v) = st.result.take() {
            return Poll::Ready(v);
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

pub(crate) fn wrap<F>(fut: F) -> (BoxFuture, JoinHandle<F::Output>)
where
    F: Future + 'static,
    F::Output: 'static,
{
    let state = Rc::new(RefCell::new(JoinState {
        result: None,
        waker: None,
        done: false,
    }));
    let st = state.clone();
    let task = Box::pin(async move {
        let v = fut.await;
        let waker = {
            let mut s = st.borrow_mut();
            s.result = Some(v);
            s.done = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    });
    (task, JoinHandle { state })
}
