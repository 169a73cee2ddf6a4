use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::join_all;

use super::*;
use crate::vault::Error;

/// A read that counts its calls and takes `delay`.
async fn counted(calls: &AtomicUsize, delay: Duration, value: Result<u32>) -> Result<u32> {
    calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(delay).await;
    value
}

const SLOW: Duration = Duration::from_millis(50);

#[tokio::test]
async fn concurrent_identical_reads_share_one_request() {
    let coalescer = Coalescer::new(Duration::ZERO);
    let calls = AtomicUsize::new(0);
    let results = join_all((0..20).map(|_| coalescer.get("secret/app", || counted(&calls, SLOW, Ok(7))))).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let first = results[0].as_ref().unwrap();
    assert!(results.iter().all(|r| Arc::ptr_eq(r.as_ref().unwrap(), first)));
    assert_eq!(coalescer.len(), 0, "a zero window keeps nothing");
}

#[tokio::test]
async fn reads_with_different_keys_are_not_shared() {
    // E.g. the same path read with two tokens: the key tells them apart.
    let coalescer = Coalescer::new(Duration::ZERO);
    let calls = AtomicUsize::new(0);
    let (a, b) = tokio::join!(
        coalescer.get(("token-a", "secret/app"), || counted(&calls, SLOW, Ok(1))),
        coalescer.get(("token-b", "secret/app"), || counted(&calls, SLOW, Ok(2))),
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!((*a.unwrap(), *b.unwrap()), (1, 2));
}

#[tokio::test]
async fn an_error_reaches_every_waiting_caller_and_is_not_kept() {
    let coalescer = Coalescer::new(Duration::from_secs(60));
    let calls = AtomicUsize::new(0);
    let denied = || {
        Err(Error::PermissionDenied {
            operation: "kv secret/app".into(),
            errors: "permission denied".into(),
        })
    };
    let results = join_all((0..5).map(|_| coalescer.get("secret/app", || counted(&calls, SLOW, denied())))).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.reason() == "PermissionDenied"))
    );
    assert_eq!(coalescer.len(), 0);

    // A retry right after sends a request of its own.
    let retried = coalescer.get("secret/app", || counted(&calls, SLOW, Ok(3))).await;
    assert_eq!((calls.load(Ordering::SeqCst), *retried.unwrap()), (2, 3));
}

#[tokio::test]
async fn a_result_is_reused_within_the_window_and_dropped_after_it() {
    let window = Duration::from_millis(100);
    let coalescer = Coalescer::new(window);
    let calls = AtomicUsize::new(0);
    let first = coalescer
        .get("secret/app", || counted(&calls, Duration::ZERO, Ok(1)))
        .await
        .unwrap();
    let again = coalescer
        .get("secret/app", || counted(&calls, Duration::ZERO, Ok(2)))
        .await
        .unwrap();
    assert_eq!(
        (calls.load(Ordering::SeqCst), *again),
        (1, 1),
        "reused within the window"
    );
    let weak = Arc::downgrade(&first);
    drop((first, again));
    assert_eq!(coalescer.len(), 1);

    tokio::time::sleep(window * 3).await;
    assert_eq!(coalescer.len(), 0);
    assert!(weak.upgrade().is_none(), "the value outlived the window");
    let later = coalescer
        .get("secret/app", || counted(&calls, Duration::ZERO, Ok(2)))
        .await
        .unwrap();
    assert_eq!((calls.load(Ordering::SeqCst), *later), (2, 2));
}

#[tokio::test]
async fn a_waiting_caller_takes_over_when_the_leader_is_dropped() {
    let coalescer = Arc::new(Coalescer::new(Duration::ZERO));
    let leader = tokio::spawn({
        let coalescer = coalescer.clone();
        async move { coalescer.get("secret/app", std::future::pending::<Result<u32>>).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let waiter = tokio::spawn({
        let coalescer = coalescer.clone();
        async move { coalescer.get("secret/app", || async { Ok(5) }).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiter.is_finished(), "the waiter should wait for the leader");

    leader.abort();
    let value = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*value.unwrap(), 5);
    assert_eq!(coalescer.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_result_is_held_while_callers_are_on_their_way_and_never_past_the_limit() {
    let window = Duration::from_secs(1);
    let coalescer = Coalescer::new(window);
    let calls = AtomicUsize::new(0);
    let waiting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hold: Hold = Some(Arc::new({
        let waiting = waiting.clone();
        move || {
            if waiting.load(Ordering::SeqCst) {
                Keep::ForAll
            } else {
                Keep::No
            }
        }
    }));
    let first = coalescer
        .get_held(
            "secret/app",
            || counted(&calls, Duration::ZERO, Ok(1)),
            Age::Recent,
            hold.clone(),
        )
        .await
        .unwrap();
    let weak = Arc::downgrade(&first);
    drop(first);
    tokio::time::sleep(window * 10).await;
    assert_eq!(coalescer.len(), 1, "held while callers are on their way");
    waiting.store(false, Ordering::SeqCst);
    tokio::time::sleep(window * 2).await;
    assert_eq!(coalescer.len(), 0, "dropped once none is");
    assert!(weak.upgrade().is_none());

    // Callers said to be on their way forever: still dropped at MAX_HOLD.
    waiting.store(true, Ordering::SeqCst);
    coalescer
        .get_held(
            "secret/app",
            || counted(&calls, Duration::ZERO, Ok(2)),
            Age::Recent,
            hold,
        )
        .await
        .unwrap();
    tokio::time::sleep(MAX_HOLD - window * 2).await;
    assert_eq!(coalescer.len(), 1);
    tokio::time::sleep(window * 3).await;
    assert_eq!(coalescer.len(), 0, "never kept past MAX_HOLD");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_result_kept_for_arrivals_serves_first_reads_only_and_a_later_read_replaces_it() {
    let window = Duration::from_secs(1);
    let coalescer = Coalescer::new(window);
    let calls = AtomicUsize::new(0);
    let keep = Arc::new(parking_lot::Mutex::new(Keep::ForFirst));
    let hold: Hold = Some(Arc::new({
        let keep = keep.clone();
        move || *keep.lock()
    }));
    let read = |age, value: u32| {
        let calls = &calls;
        coalescer.get_held(
            "secret/app",
            move || counted(calls, Duration::ZERO, Ok(value)),
            age,
            hold.clone(),
        )
    };
    assert_eq!(*read(Age::First, 1).await.unwrap(), 1);
    assert_eq!(
        *read(Age::Recent, 2).await.unwrap(),
        1,
        "anyone within the reuse window"
    );

    tokio::time::sleep(window * 3).await;
    assert_eq!(*read(Age::First, 3).await.unwrap(), 1, "a first read uses the kept one");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        *read(Age::Recent, 4).await.unwrap(),
        4,
        "a refresh never uses a read kept for arrivals"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        *read(Age::First, 5).await.unwrap(),
        4,
        "the new read replaced the old one"
    );

    // Kept for callers waiting: everyone may use it; then nobody.
    *keep.lock() = Keep::ForAll;
    tokio::time::sleep(window * 3).await;
    assert_eq!(*read(Age::Recent, 6).await.unwrap(), 4);
    *keep.lock() = Keep::No;
    tokio::time::sleep(window * 2).await;
    assert_eq!(coalescer.len(), 0);
    assert_eq!(*read(Age::First, 7).await.unwrap(), 7);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
