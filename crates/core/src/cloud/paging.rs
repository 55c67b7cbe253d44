//! Paging through list actions until every item the server counts has been
//! seen, with de-duplication (items shift between pages when backups are
//! created or expire mid-listing), and serde helpers shared by the typed
//! action modules.

use std::collections::HashSet;
use std::future::Future;

use serde::{Deserialize, Deserializer};

use crate::cloud::error::ApiError;

/// Listing passes before accepting an incomplete result: a pass that ends
/// short of `TotalCount` (an item slid from one page to an earlier one) is
/// repeated from the start.
const MAX_PASSES: usize = 3;

/// Pages per pass before giving up (a server that keeps returning full
/// pages would otherwise loop forever).
const MAX_PAGES: u64 = 10_000;

/// One page of a listing: the server's total and the page's items.
#[derive(Debug)]
pub struct Page<T> {
    /// `TotalCount`: every matching item, not the page size.
    pub total: u64,
    /// The items of this page.
    pub items: Vec<T>,
}

/// Fetch pages of `limit` items at offsets 0, limit, 2·limit… until the
/// pass reaches `TotalCount`. A pass is trusted when `TotalCount` stayed the
/// same on all its pages and it saw that many distinct items; otherwise the
/// list changed underneath (a backup was created or expired, sliding items
/// across page boundaries) and the pass is repeated from the start, up to
/// `MAX_PASSES`. Items are de-duplicated by `key` (first occurrence wins,
/// order kept).
pub async fn collect_pages<T, K, F, Fut>(
    action: &str,
    limit: u64,
    key: K,
    mut fetch: F,
) -> Result<Vec<T>, ApiError>
where
    K: Fn(&T) -> String,
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<Page<T>, ApiError>>,
{
    let limit = limit.max(1);
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    for pass in 0..MAX_PASSES {
        let mut offset = 0u64;
        let mut pages = 0u64;
        let mut pass_seen = HashSet::new();
        let mut first_total = None;
        let mut stable = true;
        let mut total;
        loop {
            let page = fetch(offset).await?;
            total = page.total;
            stable &= *first_total.get_or_insert(total) == total;
            let returned = page.items.len() as u64;
            for item in page.items {
                let id = key(&item);
                pass_seen.insert(id.clone());
                if seen.insert(id) {
                    items.push(item);
                }
            }
            pages += 1;
            if returned == 0 || offset + limit >= total {
                break;
            }
            if pages >= MAX_PAGES {
                return Err(ApiError::BadResponse {
                    action: action.to_string(),
                    what: format!(
                        "more than {MAX_PAGES} pages of {limit} items (TotalCount {total})"
                    ),
                });
            }
            offset += limit;
        }
        if stable && pass_seen.len() as u64 >= total {
            break;
        }
        if pass + 1 < MAX_PASSES {
            tracing::debug!(
                action,
                seen = pass_seen.len(),
                total,
                "list changed while paging; listing again"
            );
        } else {
            tracing::warn!(
                action,
                seen = pass_seen.len(),
                total,
                "list kept changing while paging; what is missing is picked up next cycle"
            );
        }
    }
    Ok(items)
}

/// Deserialize `null` as the type's default (the APIs mark many fields nullable).
pub fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A server-side list that can change between page requests.
    struct Listing {
        items: Mutex<Vec<u32>>,
        calls: Mutex<Vec<u64>>,
    }

    impl Listing {
        fn new(items: Vec<u32>) -> Self {
            Self {
                items: Mutex::new(items),
                calls: Mutex::new(Vec::new()),
            }
        }

        /// `collect_pages` over this list in pages of `limit`; `change` is
        /// applied to the list each time the page at offset 0 was served.
        async fn collect(&self, limit: u64, change: impl Fn(&mut Vec<u32>)) -> Vec<u32> {
            collect_pages(
                "A",
                limit,
                |i: &u32| i.to_string(),
                |offset| {
                    let page = self.page(offset, limit);
                    if offset == 0 {
                        change(&mut self.items.lock().expect("lock"));
                    }
                    async move { Ok(page) }
                },
            )
            .await
            .expect("list")
        }

        fn page(&self, offset: u64, limit: u64) -> Page<u32> {
            self.calls.lock().expect("lock").push(offset);
            let items = self.items.lock().expect("lock");
            let start = (offset as usize).min(items.len());
            let end = (start + limit as usize).min(items.len());
            Page {
                total: items.len() as u64,
                items: items[start..end].to_vec(),
            }
        }
    }

    #[tokio::test]
    async fn pages_until_total_count() {
        let listing = Listing::new((0..45).collect());
        let got = listing.collect(20, |_| {}).await;
        assert_eq!(got, (0..45).collect::<Vec<_>>());
        assert_eq!(*listing.calls.lock().expect("lock"), vec![0, 20, 40]);
    }

    #[tokio::test]
    async fn an_item_inserted_at_the_front_mid_listing_is_not_duplicated() {
        let listing = Listing::new((0..30).rev().collect()); // newest first
                                                             // A new backup appears after the first page was served.
        let got = listing.collect(10, |items| items.insert(0, 100)).await;
        let mut sorted = got.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "no duplicates: {got:?}");
        // Every item present from the start was seen, and the newcomer too
        // (found by the second pass that runs because 30 < 31).
        for i in 0..30 {
            assert!(got.contains(&i), "{i} missing from {got:?}");
        }
        assert!(got.contains(&100));
    }

    #[tokio::test]
    async fn an_item_expiring_mid_listing_does_not_hide_another() {
        let listing = Listing::new((0..30).collect());
        // The oldest backup expires: everything slides one up, so item 10
        // moves to page 0 and a plain walk would skip it.
        let got = listing
            .collect(10, |items| {
                items.remove(0);
            })
            .await;
        for i in 1..30 {
            assert!(got.contains(&i), "{i} missing from {got:?}");
        }
    }

    #[tokio::test]
    async fn errors_stop_the_listing() {
        let err = collect_pages::<u32, _, _, _>(
            "A",
            10,
            |i: &u32| i.to_string(),
            |_| async {
                Err(ApiError::Decode {
                    action: "A".into(),
                    message: "bad".into(),
                })
            },
        )
        .await
        .expect_err("fails");
        assert!(matches!(err, ApiError::Decode { .. }));
    }
}
