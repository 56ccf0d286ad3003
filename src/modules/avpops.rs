//! `avpops` / `sqlops`: `avp_db_query(query[, dest[, db_id]])`, its OpenSIPS 3.2+ name
//! `sql_query(...)`, and ringsip's `sql_query_params(query, dest, p1[, ..p5])`, all
//! asynchronous on the shard's ring through per-shard [`DbPool`]s.
//!
//! Module parameters (both modules): `db_url` (repeatable; `"ID URL"` gives the URL an
//! id, as OpenSIPS does; the first URL is the default; a host name is resolved by the
//! shard's resolver whenever a connection is opened), `query_timeout` (ms, default 2000),
//! and ringsip's `pool_size`, `connect_timeout` (ms), `max_queued_queries`.
//!
//! Results follow OpenSIPS: `$rc` 1 with rows, -2 with no rows, -1 on an error (including
//! a time-out, a dead server or a full queue); each column fills the AVP at the same
//! position of `dest`, row by row, so the first row ends at index 0; NULL is `<null>`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::proxy::asyncop::OpFuture;
use crate::proxy::host::Host;
use crate::proxy::nexthop::shard_resolver;
use crate::script::{
    interp::{Arg, MsgState},
    ir::ModParamValue,
    pv::Pv,
    Script, Value,
};
use crate::transport::dns::ring::SystemDnsConfig;

use super::db::pool::{DbHost, DbPool, DbPoolConfig};
use super::db::{avp_db_query_pushes, DbScheme, DbUrl};
use super::{arg_int, arg_str, Outputs};

/// The database settings of a script, checked at start.
#[derive(Clone, Debug)]
pub struct DbSettings {
    /// `(id, url)`; the first is the default.
    pub urls: Vec<(i64, DbUrl)>,
    pub pool: DbPoolConfig,
    pub query_timeout: Duration,
}

/// Reads and checks `avpops`/`sqlops`/`db_*` parameters. `Err` names the bad one.
pub fn settings(script: &Script) -> Result<DbSettings, String> {
    let mut urls = Vec::new();
    let mut pool = DbPoolConfig::default();
    let mut query_timeout = Duration::from_millis(2000);
    for p in &script.modparams {
        let module = p.module_name;
        if !matches!(module, "avpops" | "sqlops" | "db_mysql" | "db_postgres") {
            continue;
        }
        let ms = |v: i64| {
            u64::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .map(Duration::from_millis)
        };
        match (p.name.as_str(), &p.value) {
            ("db_url", ModParamValue::Str(s)) => {
                let (id, url) = match s.trim().split_once(char::is_whitespace) {
                    Some((id, rest)) if id.parse::<i64>().is_ok() => {
                        (id.parse().unwrap_or(0), rest.trim())
                    }
                    _ => (0, s.trim()),
                };
                let url = DbUrl::parse(url).map_err(|e| format!("{module}.db_url: {e}"))?;
                // A host name is only checked for syntax here: it is resolved when a
                // connection is opened (the database may come later).
                DbHost::parse(&url.host).map_err(|e| format!("{module}.db_url: {e}"))?;
                urls.push((id, url));
            }
            ("query_timeout", ModParamValue::Int(v)) => {
                query_timeout = ms(*v).ok_or(format!("{module}.query_timeout must be > 0"))?;
            }
            ("connect_timeout", ModParamValue::Int(v)) => {
                pool.connect_timeout =
                    ms(*v).ok_or(format!("{module}.connect_timeout must be > 0"))?;
            }
            ("pool_size", ModParamValue::Int(v)) => {
                pool.pool_size = usize::try_from(*v)
                    .ok()
                    .filter(|&n| n > 0 && n <= 1024)
                    .ok_or(format!("{module}.pool_size must be 1..=1024"))?;
            }
            ("max_queued_queries", ModParamValue::Int(v)) => {
                pool.max_queued_queries = usize::try_from(*v)
                    .ok()
                    .filter(|&n| n <= 1_000_000)
                    .ok_or(format!("{module}.max_queued_queries must be 0..=1000000"))?;
            }
            _ => {}
        }
    }
    pool.query_timeout = query_timeout;
    Ok(DbSettings {
        urls,
        pool,
        query_timeout,
    })
}

/// This shard's pools, built on first use from the script's parameters.
struct ShardPools {
    pools: Vec<(i64, Rc<DbPool>)>,
    query_timeout: Duration,
}

thread_local! {
    static POOLS: RefCell<Option<Rc<ShardPools>>> = const { RefCell::new(None) };
}

fn shard_pools(script: &Script, dns: &SystemDnsConfig) -> Result<Rc<ShardPools>, String> {
    if let Some(p) = POOLS.with(|p| p.borrow().clone()) {
        return Ok(p);
    }
    let s = settings(script)?;
    let mut pools = Vec::new();
    for (id, url) in s.urls {
        // A host name uses the shard's resolver (and cache), shared with t_relay and
        // rest_client; an IP literal or localhost needs none.
        let pool = match DbHost::parse(&url.host).map_err(|e| e.to_string())? {
            DbHost::Addr(_) => DbPool::new(url, s.pool),
            DbHost::Name(_) => DbPool::with_resolver(url, s.pool, shard_resolver(dns)),
        }
        .map_err(|e| e.to_string())?;
        pools.push((id, pool));
    }
    let p = Rc::new(ShardPools {
        pools,
        query_timeout: s.query_timeout,
    });
    POOLS.with(|slot| *slot.borrow_mut() = Some(Rc::clone(&p)));
    Ok(p)
}

fn pool_for(h: &Host<'_>, db_id: Option<i64>) -> Result<(Rc<DbPool>, Duration), i32> {
    let shared = &h.core.shared;
    let pools = shard_pools(&shared.script, &shared.modules.dns).map_err(|e| {
        tracing::error!("avp_db_query: {e}");
        -1
    })?;
    let pool = match db_id {
        Some(id) => pools.pools.iter().find(|(i, _)| *i == id),
        None => pools.pools.first(),
    };
    match pool {
        Some((_, p)) => Ok((Rc::clone(p), pools.query_timeout)),
        None => {
            tracing::error!("avp_db_query: no db_url with id {db_id:?}");
            Err(-1)
        }
    }
}

fn dests(args: &[Arg<'_>], i: usize) -> Vec<Pv> {
    match args.get(i) {
        Some(Arg::PvList(l)) => l.to_vec(),
        Some(Arg::Pv(p)) => vec![(*p).clone()],
        _ => Vec::new(),
    }
}

/// The future of one query: runs it on the pool, maps the result to `$rc` and AVPs.
fn query_future(
    pool: Rc<DbPool>,
    sql: String,
    params: Vec<Option<Vec<u8>>>,
    dests: Vec<Pv>,
    timeout: Duration,
) -> OpFuture {
    Box::pin(async move {
        let res = pool.query(sql, params, Some(timeout)).await;
        let res = match res {
            Ok(r) => Ok(r),
            Err(e) => {
                tracing::warn!("database query failed: {e}");
                return (-1, Outputs::default());
            }
        };
        let mapped = avp_db_query_pushes(&res, (!dests.is_empty()).then_some(dests.len()));
        let mut out = Outputs::default();
        for (col, val) in mapped.pushes {
            if let Some(pv) = dests.get(col) {
                let v = String::from_utf8_lossy(val).into_owned();
                out.sets.push((pv.clone(), Value::Str(v)));
            }
        }
        (mapped.rc, out)
    })
}

/// `avp_db_query(query[, dest[, db_id]])` / `sql_query(...)`.
pub fn avp_db_query(
    h: &mut Host<'_>,
    args: &[Arg<'_>],
    _st: &mut MsgState,
) -> Result<(OpFuture, Duration), i32> {
    let sql = arg_str(args, 0).ok_or(-1)?.to_string();
    let (pool, timeout) = pool_for(h, arg_int(args, 2))?;
    let fut = query_future(pool, sql, Vec::new(), dests(args, 1), timeout);
    Ok((fut, timeout + Duration::from_secs(1)))
}

/// `sql_query_params(query, dest, p1[, p2..p5])`: `?` placeholders in `query` are bound to
/// the values of `p1..p5` by the server (a prepared / extended-protocol statement), so a
/// value can never change the statement. `$1..$n` are used for PostgreSQL.
pub fn sql_query_params(
    h: &mut Host<'_>,
    args: &[Arg<'_>],
    _st: &mut MsgState,
) -> Result<(OpFuture, Duration), i32> {
    let sql = arg_str(args, 0).ok_or(-1)?;
    let (pool, timeout) = pool_for(h, None)?;
    let params: Vec<Option<Vec<u8>>> = (2..7)
        .filter_map(|i| arg_str(args, i))
        .map(|v| Some(v.as_bytes().to_vec()))
        .collect();
    let sql = match pool_scheme(&pool) {
        DbScheme::Postgres => dollar_placeholders(sql),
        DbScheme::Mysql => sql.to_string(),
    };
    let fut = query_future(pool, sql, params, dests(args, 1), timeout);
    Ok((fut, timeout + Duration::from_secs(1)))
}

fn pool_scheme(pool: &DbPool) -> DbScheme {
    pool.url().scheme
}

/// Rewrites `?` placeholders (outside quotes) as `$1`, `$2`, ... for PostgreSQL.
pub fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quote: Option<char> = None;
    let mut n = 0;
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (None, '?') => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_outside_quotes_are_numbered() {
        assert_eq!(
            dollar_placeholders("SELECT a FROM t WHERE b=? AND c='?' AND d=?"),
            "SELECT a FROM t WHERE b=$1 AND c='?' AND d=$2"
        );
    }
}
