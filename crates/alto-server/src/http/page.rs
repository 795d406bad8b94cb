//! The one pagination helper of every paginated list: `?limit=` (1 to [`MAX_PAGE`], each list
//! with its default) and `?cursor=`, one opaque typed cursor, answered as `Page<T>`
//! (`{items, next_cursor}`).
//!
//! A cursor is URL-safe base64 (no padding) of a small JSON document that names the list it
//! belongs to and the key of the last item returned (`{"v":1,"list":"jobs","after":{…}}`). A
//! garbled cursor, one of another version or one from another list is refused with
//! `invalid_query` before anything is read. Lists small by nature (rules, rule versions,
//! storage targets, tags, credentials) are not paginated.

use std::marker::PhantomData;

use alto_api_types::{ErrorCode, Page};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::ApiError;

/// The most items any list returns per page (`?limit=`).
pub const MAX_PAGE: i64 = 1000;

/// The version written into every cursor; a cursor of another version is refused.
const VERSION: u8 = 1;

/// The longest cursor accepted (an inventory cursor holds a path of up to 4 KiB).
const MAX_CURSOR_LEN: usize = 16 * 1024;

/// A paginated list: the name its cursors carry, the key of its order and its default page.
pub trait List {
    /// Written into the list's cursors; a cursor naming another list is refused.
    const NAME: &'static str;
    /// Items per page when `?limit=` is absent.
    const DEFAULT_LIMIT: i64;
    /// The position after which the next page starts.
    type Key: Serialize + DeserializeOwned;
}

/// `(created_at, id)`: the key of lists ordered by creation (either direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Created {
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub t: DateTime<Utc>,
    pub id: Uuid,
}

impl Created {
    pub fn of(t: DateTime<Utc>, id: Uuid) -> Self {
        Self { t, id }
    }
}

impl From<Created> for alto_db::Cursor {
    fn from(c: Created) -> Self {
        alto_db::Cursor { created_at: c.t, id: c.id }
    }
}

impl From<Created> for (DateTime<Utc>, Uuid) {
    fn from(c: Created) -> Self {
        (c.t, c.id)
    }
}

/// `seq`: the key of lists ordered by a sequence number (the audit trail, a job's files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seq {
    pub seq: i64,
}

/// `(host_id, file_path)`: the key of the inventory's file list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPath {
    pub host: Uuid,
    pub path: String,
}

macro_rules! lists {
    ($($(#[$m:meta])* $ty:ident = $name:literal, $key:ty, $default:literal;)*) => {$(
        $(#[$m])*
        pub struct $ty;
        impl List for $ty {
            const NAME: &'static str = $name;
            const DEFAULT_LIMIT: i64 = $default;
            type Key = $key;
        }
    )*};
}

lists! {
    /// `GET /tenants`, oldest first.
    Tenants = "tenants", Created, 50;
    /// `GET /tenants/{id}/users` and `GET /platform/users`, oldest first.
    Users = "users", Created, 50;
    /// `GET /tenants/{id}/hosts`, oldest first.
    Hosts = "hosts", Created, 50;
    /// `GET /tenants/{id}/scans`, newest first.
    Scans = "scans", Created, 50;
    /// `GET /tenants/{id}/inventory/files`, by host and path.
    InventoryFiles = "inventory_files", HostPath, 100;
    /// `GET /tenants/{id}/plans`, newest first.
    Plans = "plans", Created, 50;
    /// `GET /tenants/{id}/jobs`, newest first.
    Jobs = "jobs", Created, 50;
    /// `GET /tenants/{id}/jobs/{id}/files`, by `seq`.
    JobFiles = "job_files", Seq, 1000;
    /// `GET /tenants/{id}/stubs`, newest first.
    Stubs = "stubs", Created, 100;
    /// `GET /tenants/{id}/audit` and `GET /platform/audit`, newest first.
    Audit = "audit", Seq, 100;
}

/// The query of a list with no filters of its own (tenants, users).
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items per page, 1–1000 (default 50).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Serialize)]
struct TokenOut<'a, K> {
    v: u8,
    list: &'a str,
    after: &'a K,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenIn<K> {
    v: u8,
    list: String,
    after: K,
}

/// The cursor of list `L` that continues after `key`.
pub fn encode<L: List>(key: &L::Key) -> String {
    let doc = TokenOut { v: VERSION, list: L::NAME, after: key };
    let json = serde_json::to_vec(&doc).expect("a cursor key serialises");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The key in a cursor of list `L`; `invalid_query` for anything else.
pub fn decode<L: List>(cursor: &str) -> Result<L::Key, ApiError> {
    let bad = |why: &str| ApiError::new(ErrorCode::InvalidQuery, format!("invalid cursor: {why}"));
    if cursor.len() > MAX_CURSOR_LEN {
        return Err(bad("too long"));
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad("not a cursor this server issued"))?;
    // The list's name first, so a cursor of another list says so whatever its key.
    #[derive(Deserialize)]
    struct Head {
        v: u8,
        list: String,
    }
    let head: Head =
        serde_json::from_slice(&raw).map_err(|_| bad("not a cursor this server issued"))?;
    if head.v != VERSION {
        return Err(bad("issued by another version; start from the first page"));
    }
    if head.list != L::NAME {
        return Err(bad(&format!("it belongs to another list ({:?})", head.list)));
    }
    let doc: TokenIn<L::Key> =
        serde_json::from_slice(&raw).map_err(|_| bad("not a cursor this server issued"))?;
    debug_assert!(doc.v == VERSION && doc.list == L::NAME);
    Ok(doc.after)
}

/// A list request's page: its size and where it starts. Fetch [`Pager::fetch`] rows (one
/// more than the page) in the list's order after [`Pager::after`], then make the answer with
/// [`Pager::page`].
#[derive(Debug)]
pub struct Pager<L: List> {
    pub limit: i64,
    pub after: Option<L::Key>,
    list: PhantomData<L>,
}

impl<L: List> Pager<L> {
    /// Checks `?limit=` (1 to [`MAX_PAGE`], else `invalid_query`) and decodes `?cursor=`.
    pub fn new(limit: Option<i64>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let limit = match limit {
            None => L::DEFAULT_LIMIT,
            Some(n) if (1..=MAX_PAGE).contains(&n) => n,
            Some(_) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("limit must be 1 to {MAX_PAGE}"),
                ))
            }
        };
        let after = cursor.map(decode::<L>).transpose()?;
        Ok(Self { limit, after, list: PhantomData })
    }

    /// How many rows to fetch: the page and one more, which says whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The page from rows fetched with [`Pager::fetch`]: the first `limit` rows mapped to
    /// items, and the cursor after the last of them when more follow.
    pub fn page<R, T>(
        &self,
        mut rows: Vec<R>,
        key: impl Fn(&R) -> L::Key,
        map: impl FnMut(R) -> T,
    ) -> Page<T> {
        let limit = usize::try_from(self.limit).unwrap_or(0);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more { rows.last().map(|r| encode::<L>(&key(r))) } else { None };
        Page { items: rows.into_iter().map(map).collect(), next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_names_its_list() {
        let k = Created::of(
            DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            Uuid::nil(),
        );
        let c = encode::<Jobs>(&k);
        assert_eq!(decode::<Jobs>(&c).unwrap(), k);
        // Same key type, other list.
        assert!(decode::<Plans>(&c).is_err());
        // Other key type.
        assert!(decode::<Audit>(&c).is_err());
        assert!(decode::<Jobs>("garbage!").is_err());
        assert!(decode::<Jobs>("").is_err());
        let p = HostPath { host: Uuid::nil(), path: "/srv/a|b\u{e9}".into() };
        assert_eq!(decode::<InventoryFiles>(&encode::<InventoryFiles>(&p)).unwrap(), p);
    }

    #[test]
    fn limits_are_checked_once() {
        assert_eq!(Pager::<Jobs>::new(None, None).unwrap().limit, 50);
        assert_eq!(Pager::<Audit>::new(None, None).unwrap().limit, 100);
        assert_eq!(Pager::<Jobs>::new(Some(MAX_PAGE), None).unwrap().fetch(), MAX_PAGE + 1);
        assert!(Pager::<Jobs>::new(Some(0), None).is_err());
        assert!(Pager::<Jobs>::new(Some(MAX_PAGE + 1), None).is_err());
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_follow() {
        let p = Pager::<Audit>::new(Some(2), None).unwrap();
        let full = p.page(vec![5_i64, 4, 3], |s| Seq { seq: *s }, |s| s);
        assert_eq!(full.items, vec![5, 4]);
        let next = full.next_cursor.expect("more follow");
        assert_eq!(decode::<Audit>(&next).unwrap(), Seq { seq: 4 });
        let last = p.page(vec![2_i64, 1], |s| Seq { seq: *s }, |s| s);
        assert!(last.next_cursor.is_none());
    }
}
